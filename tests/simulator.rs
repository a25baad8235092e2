//! The Enlighten simulator over real loopback HTTP: OAuth flows, key and token checks, plans and
//! quotas, injected faults, error envelopes, the hit log and the shapes of the main endpoints.

use std::future::Future;
use std::time::Duration;

use enphase_mqtt::simulator::{self, SimHandle, SimOptions, SimPlan};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Every test body and every HTTP call is bounded by this.
const LIMIT: Duration = Duration::from_secs(30);
const REDIRECT: &str = "http://localhost:8080/callback";

/// Runs a test body with a time limit.
async fn bounded<F: Future<Output = ()>>(body: F) {
    tokio::time::timeout(LIMIT, body).await.expect("test finished in time");
}

/// A simulator on a free loopback port and an HTTP client that does not follow redirects.
struct Rig {
    sim: SimHandle,
    opts: SimOptions,
    http: reqwest::Client,
}

impl Rig {
    async fn new(opts: SimOptions) -> Self {
        let sim = simulator::spawn(opts.clone(), "127.0.0.1:0".parse().expect("addr")).await.expect("simulator starts");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(LIMIT)
            .build()
            .expect("client");
        Rig { sim, opts, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url)
    }

    /// Runs the browser step; returns the `Location` of the redirect.
    async fn authorize(&self, state: Option<&str>) -> url::Url {
        let mut query =
            vec![("response_type", "code"), ("client_id", self.opts.client_id.as_str()), ("redirect_uri", REDIRECT)];
        if let Some(state) = state {
            query.push(("state", state));
        }
        let resp = self.http.get(self.url("/oauth/authorize")).query(&query).send().await.expect("authorize");
        assert_eq!(resp.status(), StatusCode::FOUND);
        let location = resp.headers()["location"].to_str().expect("location").to_owned();
        url::Url::parse(&location).expect("redirect URL")
    }

    /// POSTs to `/oauth/token` with the query `params` and the right Basic credentials.
    async fn token(&self, params: &[(&str, &str)]) -> (StatusCode, Value) {
        self.token_as(params, &self.opts.client_id, &self.opts.client_secret).await
    }

    async fn token_as(&self, params: &[(&str, &str)], id: &str, secret: &str) -> (StatusCode, Value) {
        let resp = self
            .http
            .post(self.url("/oauth/token"))
            .query(params)
            .basic_auth(id, Some(secret))
            .send()
            .await
            .expect("token call");
        let status = resp.status();
        (status, resp.json().await.expect("token JSON"))
    }

    /// A token pair through the authorization-code flow.
    async fn login(&self) -> Value {
        let location = self.authorize(None).await;
        let code = query_value(&location, "code").expect("code");
        let (status, body) =
            self.token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", REDIRECT)]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// GET under `/api/v4` with the key and the bearer token.
    async fn api(&self, path: &str, token: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self
            .http
            .get(self.url(&format!("/api/v4{path}")))
            .query(&[("key", self.opts.api_key.as_str())])
            .query(query)
            .bearer_auth(token)
            .send()
            .await
            .expect("api call");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn admin_post(&self, path: &str, body: Value) -> Value {
        let resp = self.http.post(self.url(path)).json(&body).send().await.expect("admin call");
        assert!(resp.status().is_success(), "admin {path}: {}", resp.status());
        resp.json().await.expect("admin JSON")
    }

    async fn admin_get(&self, path: &str) -> Value {
        self.http.get(self.url(path)).send().await.expect("admin call").json().await.expect("admin JSON")
    }
}

fn query_value(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

fn partner() -> SimOptions {
    SimOptions { plan: SimPlan::Partner, ..SimOptions::default() }
}

fn access(tokens: &Value) -> String {
    tokens["access_token"].as_str().expect("access_token").to_owned()
}

fn refresh(tokens: &Value) -> String {
    tokens["refresh_token"].as_str().expect("refresh_token").to_owned()
}

#[tokio::test]
async fn code_flow_issues_tokens_and_codes_are_single_use() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let location = rig.authorize(Some("xyz")).await;
        assert!(location.as_str().starts_with(REDIRECT));
        assert_eq!(query_value(&location, "state").as_deref(), Some("xyz"));
        let code = query_value(&location, "code").expect("code");

        let params = [("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", REDIRECT)];
        let (status, body) = rig.token(&params).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["token_type"], "bearer");
        assert_eq!(body["expires_in"], 86_393);
        assert_eq!(body["scope"], "read write");
        assert_eq!(body["app_type"], "system");
        assert_eq!(body["is_internal_app"], false);
        assert_eq!(body["jti"].as_str().map(str::len), Some(36));
        assert!(body["enl_password_last_changed"].is_string() && body["enl_uid"].is_string());

        let (status, again) = rig.token(&params).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(again["error"], "invalid_grant", "a code works once");

        // Without a state the redirect carries none; a different redirect_uri is refused.
        let location = rig.authorize(None).await;
        assert_eq!(query_value(&location, "state"), None);
        let code = query_value(&location, "code").expect("code");
        let (status, body) = rig
            .token(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", "http://elsewhere/")])
            .await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

        let (status, systems) = rig.api("/systems", &access(&rig.login().await), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(systems["total"], 3);
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn authorize_rejects_bad_requests_and_can_deny() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let resp = rig
            .http
            .get(rig.url("/oauth/authorize"))
            .query(&[("response_type", "code"), ("client_id", "someone-else"), ("redirect_uri", REDIRECT)])
            .send()
            .await
            .expect("authorize");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let resp = rig
            .http
            .get(rig.url("/oauth/authorize"))
            .query(&[("response_type", "code"), ("client_id", rig.opts.client_id.as_str())])
            .send()
            .await
            .expect("authorize");
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "redirect_uri is required");

        rig.admin_post("/admin/deny", json!({"count": 1})).await;
        let denied = rig.authorize(Some("s1")).await;
        assert_eq!(query_value(&denied, "error").as_deref(), Some("access_denied"));
        assert_eq!(query_value(&denied, "state").as_deref(), Some("s1"));
        assert_eq!(query_value(&denied, "code"), None);
        let approved = rig.authorize(Some("s2")).await;
        assert!(query_value(&approved, "code").is_some(), "only one denial was asked for");
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn refresh_tokens_rotate_strictly() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let first = rig.login().await;
        let (status, second) = rig.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh(&first))]).await;
        assert_eq!(status, StatusCode::OK, "{second}");
        assert_ne!(refresh(&second), refresh(&first));
        assert_ne!(access(&second), access(&first));
        assert_eq!(second["app_type"], "system", "the family keeps its app type");

        let (status, reused) = rig.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh(&first))]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(reused["error"], "invalid_grant", "the old refresh token died on rotation");

        let tokens = rig.admin_get("/admin/tokens").await;
        assert_eq!(tokens["valid_refresh_tokens"], json!([refresh(&second)]));
        assert_eq!(tokens["issued_refresh_tokens"], json!([refresh(&first), refresh(&second)]));

        let (status, _) = rig.api("/systems", &access(&second), &[]).await;
        assert_eq!(status, StatusCode::OK);
        // The previous access token lives until its own expiry (JWTs cannot be recalled).
        let (status, _) = rig.api("/systems", &access(&first), &[]).await;
        assert_eq!(status, StatusCode::OK);

        rig.admin_post("/admin/revoke", json!({})).await;
        let (status, body) = rig.api("/systems", &access(&second), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["details"], "User is not authorized");
        let (status, _) = rig.token(&[("grant_type", "refresh_token"), ("refresh_token", &refresh(&second))]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "revoked refresh tokens are refused");
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn password_grant_basic_auth_and_grant_types() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let (status, body) = rig
            .token(&[("grant_type", "password"), ("username", "demo@example.com"), ("password", "demo-password")])
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["app_type"], "partner");

        let (status, body) =
            rig.token(&[("grant_type", "password"), ("username", "demo@example.com"), ("password", "nope")]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid_grant")));

        let (status, body) = rig
            .token_as(
                &[("grant_type", "password"), ("username", "demo@example.com"), ("password", "demo-password")],
                &rig.opts.client_id,
                "wrong-secret",
            )
            .await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::UNAUTHORIZED, Some("unauthorized")));

        let resp = rig
            .http
            .post(rig.url("/oauth/token"))
            .query(&[("grant_type", "password")])
            .send()
            .await
            .expect("token call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "Basic auth is required");

        let (status, body) = rig.token(&[("grant_type", "client_credentials")]).await;
        assert_eq!((status, body["error"].as_str()), (StatusCode::BAD_REQUEST, Some("unsupported_grant_type")));

        // Parameters may also come as a form body.
        let resp = rig
            .http
            .post(rig.url("/oauth/token"))
            .basic_auth(&rig.opts.client_id, Some(&rig.opts.client_secret))
            .form(&[("grant_type", "password"), ("username", "demo@example.com"), ("password", "demo-password")])
            .send()
            .await
            .expect("token call");
        assert_eq!(resp.status(), StatusCode::OK);
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn api_key_and_bearer_are_both_required() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let token = access(&rig.login().await);
        let resp = rig.http.get(rig.url("/api/v4/systems")).bearer_auth(&token).send().await.expect("call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "missing key");
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body, json!({"message": "Not Authorized", "details": "User is not authorized", "code": 401}));

        let resp = rig
            .http
            .get(rig.url("/api/v4/systems"))
            .query(&[("key", "wrong")])
            .bearer_auth(&token)
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "wrong key");

        let resp = rig
            .http
            .get(rig.url("/api/v4/systems"))
            .query(&[("key", rig.opts.api_key.as_str())])
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "missing token");

        let (status, _) = rig.api("/systems", "sim-at-not-a-token", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "unknown token");

        // The key may also come as a header.
        let resp =
            rig.http.get(rig.url("/api/v4/systems")).header("key", &rig.opts.api_key).bearer_auth(&token).send().await;
        assert_eq!(resp.expect("call").status(), StatusCode::OK);
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn access_tokens_expire_in_simulated_time() {
    bounded(async {
        let rig = Rig::new(SimOptions { access_ttl_secs: 60, speed: 0.0, ..partner() }).await;
        let token = access(&rig.login().await);
        assert_eq!(rig.api("/systems", &token, &[]).await.0, StatusCode::OK);
        let clock = rig.admin_post("/admin/clock", json!({"offset_secs": 61})).await;
        assert_eq!(clock["speed"], 0.0);
        assert_eq!(rig.api("/systems", &token, &[]).await.0, StatusCode::UNAUTHORIZED);
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn watt_plan_gets_401_on_device_level_endpoints() {
    bounded(async {
        let rig = Rig::new(SimOptions { speed: 0.0, ..SimOptions::default() }).await;
        let token = access(&rig.login().await);
        let (status, body) = rig.api("/systems/4210001/devices/micros/telemetry", &token, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["code"], 401);
        let (status, _) = rig.api("/systems/4210001/summary", &token, &[]).await;
        assert_eq!(status, StatusCode::OK, "the token itself is fine");
        rig.sim.shutdown().await;

        let rig = Rig::new(SimOptions { plan: SimPlan::Kilowatt, ..SimOptions::default() }).await;
        let token = access(&rig.login().await);
        let (status, body) = rig.api("/systems/4210001/devices/micros/telemetry", &token, &[("size", "5")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["devices"].as_array().map(Vec::len), Some(5));
        assert!(body["total_devices"].as_u64().is_some_and(|n| n >= 10));
        let (status, _) = rig.api("/systems/4210001/devices/micros/telemetry", &token, &[("size", "21")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "page size is limited to 20");
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn watt_plan_answers_429_on_the_eleventh_hit_of_a_minute() {
    bounded(async {
        // A frozen clock keeps all hits inside one clock minute.
        let rig = Rig::new(SimOptions { speed: 0.0, ..SimOptions::default() }).await;
        let token = access(&rig.login().await); // hit 1
        for i in 2..=10 {
            let (status, _) = rig.api("/systems", &token, &[]).await;
            assert_eq!(status, StatusCode::OK, "hit {i}");
        }
        let (status, body) = rig.api("/systems", &token, &[]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["message"], "Too Many Requests");
        assert_eq!(body["details"], "Usage limit exceeded for plan Watt");
        assert_eq!(body["code"], 429);
        assert_eq!(body["period"], "minute");
        assert_eq!(body["limit"], 10);
        let (start, end) = (body["period_start"].as_i64().expect("start"), body["period_end"].as_i64().expect("end"));
        assert_eq!((end - start, start % 60), (60, 0));
        let now = rig.admin_get("/admin/clock").await["now"].as_i64().expect("now");
        assert!((start..end).contains(&now));

        // The token endpoint shares the quota.
        let (status, _) = rig.token(&[("grant_type", "refresh_token"), ("refresh_token", "x")]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

        // The next clock minute starts afresh; a forced monthly 429 reports the calendar month.
        rig.admin_post("/admin/clock", json!({"offset_secs": 60})).await;
        assert_eq!(rig.api("/systems", &token, &[]).await.0, StatusCode::OK);
        rig.admin_post("/admin/force429", json!({"period": "month", "count": 1})).await;
        let (status, body) = rig.api("/systems", &token, &[]).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!((body["period"].as_str(), body["limit"].as_i64()), (Some("month"), Some(1_000)));
        let span = body["period_end"].as_i64().unwrap_or(0) - body["period_start"].as_i64().unwrap_or(0);
        assert!((28 * 86_400..=31 * 86_400).contains(&span), "a calendar month: {span}");
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn injected_faults_fail_the_next_calls() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let token = access(&rig.login().await);
        for kind in ["500", "500_alt", "503", "html"] {
            rig.admin_post("/admin/faults", json!({"kind": kind, "count": 1})).await;
        }
        let (status, body) = rig.api("/systems", &token, &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"message": "Internal Server Error", "details": "unable to fetch data", "code": 500}));
        let (status, body) = rig.api("/systems", &token, &[]).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body, json!({"errorCode": 7, "errorMessages": ["Data is temporarily unavailable"]}));
        let (status, _) = rig.api("/systems", &token, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        let resp = rig
            .http
            .get(rig.url("/api/v4/systems"))
            .query(&[("key", rig.opts.api_key.as_str())])
            .bearer_auth(&token)
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(resp.headers()["content-type"].to_str().unwrap_or_default().starts_with("text/html"));
        assert!(resp.text().await.expect("page").contains("This website is under heavy load (queue full)"));

        assert_eq!(rig.api("/systems", &token, &[]).await.0, StatusCode::OK, "faults are used up");

        // Faults can target the token endpoint instead.
        rig.admin_post("/admin/faults", json!({"kind": "500", "count": 1, "target": "token"})).await;
        assert_eq!(rig.api("/systems", &token, &[]).await.0, StatusCode::OK);
        let (status, body) = rig
            .token(&[("grant_type", "password"), ("username", "demo@example.com"), ("password", "demo-password")])
            .await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::INTERNAL_SERVER_ERROR, Some(500)));
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_hanging_request_does_not_block_shutdown() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let token = access(&rig.login().await);
        rig.admin_post("/admin/faults", json!({"kind": "hang", "count": 1})).await;
        let started = std::time::Instant::now();
        let result = rig
            .http
            .get(rig.url("/api/v4/systems"))
            .query(&[("key", rig.opts.api_key.as_str())])
            .bearer_auth(&token)
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(result.is_err_and(|e| e.is_timeout()), "the request hangs");
        assert!(started.elapsed() >= Duration::from_millis(300));
        let hits = rig.admin_get("/admin/hits").await;
        assert_eq!(hits.as_array().and_then(|h| h.last()).map(|h| h["status"].clone()), Some(Value::Null));
        let stopping = std::time::Instant::now();
        rig.sim.shutdown().await;
        assert!(stopping.elapsed() < Duration::from_secs(10));
    })
    .await;
}

#[tokio::test]
async fn error_envelopes_for_404_405_and_422() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let token = access(&rig.login().await);

        let (status, body) = rig.api("/systems/4219999/summary", &token, &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            json!({"message": "Not Found", "details": "System not found for {:id=>\"4219999\"}", "code": 404})
        );
        let (status, body) = rig.api("/systems/abc", &token, &[]).await;
        assert_eq!(
            (status, body["details"].as_str()),
            (StatusCode::NOT_FOUND, Some("System not found for {:id=>\"abc\"}"))
        );

        let resp = rig
            .http
            .post(rig.url("/api/v4/systems/4210001/summary"))
            .query(&[("key", rig.opts.api_key.as_str())])
            .bearer_auth(&token)
            .send()
            .await
            .expect("call");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            resp.json::<Value>().await.expect("json"),
            json!({"reason": "405", "message": ["Method not allowed"]})
        );

        let (status, body) = rig.api("/systems", &token, &[("sort_by", "name")]).await;
        assert_eq!((status, body["code"].as_i64()), (StatusCode::UNPROCESSABLE_ENTITY, Some(422)));
        let (status, _) = rig.api("/systems", &token, &[("size", "101")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        let (status, body) = rig.api("/systems/4210001/summary", &token, &[("summary_date", "2999-01-01")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["details"].as_str().unwrap_or_default().contains("Requested date is in the future"));
        let (status, body) = rig.api("/systems/4210001/summary", &token, &[("summary_date", "not-a-date")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

        let future = (rig.sim.sim.now_secs() + 86_400).to_string();
        let (status, body) =
            rig.api("/systems/4210001/telemetry/production_micro", &token, &[("start_at", future.as_str())]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let details = body["details"].as_str().unwrap_or_default();
        assert!(details.contains("Requested date range is invalid for this system"), "{details}");
        assert!(details.contains(":first_interval=>") && details.contains(":last_interval=>"), "{details}");
        let (status, _) = rig.api("/systems/4210001/telemetry/production_micro", &token, &[("start_at", "12x")]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

        let (status, body) = rig.api("/systems/4210001/alarms", &token, &[]).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(body["details"].as_str().unwrap_or_default().contains("start_time is required"));
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn hit_log_records_counted_requests_without_secrets() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let tokens = rig.login().await;
        let token = access(&tokens);
        rig.api("/systems/4210001/summary", &token, &[]).await;
        rig.api("/systems/4219999", &token, &[]).await;
        rig.http.get(rig.url("/oauth/authorize")).send().await.expect("authorize");

        let hits = rig.admin_get("/admin/hits").await;
        let hits = hits.as_array().expect("array");
        assert_eq!(hits.len(), 3, "authorize is not counted: {hits:?}");
        assert_eq!(hits[0]["path"], "/oauth/token");
        assert_eq!(hits[0]["method"], "POST");
        assert_eq!(hits[0]["grant"], "authorization_code");
        assert_eq!(hits[0]["status"], 200);
        assert_eq!(
            (hits[1]["path"].as_str(), hits[1]["status"].as_i64()),
            (Some("/api/v4/systems/4210001/summary"), Some(200))
        );
        assert_eq!(hits[2]["status"], 404);
        assert!(hits.iter().all(|h| h["at"].is_i64() && h["real_ms"].is_i64()));
        let text = serde_json::to_string(hits).expect("json");
        for secret in [rig.opts.api_key.as_str(), &token, &refresh(&tokens), rig.opts.client_secret.as_str()] {
            assert!(!text.contains(secret), "hit log leaks {secret}");
        }

        let resp = rig.http.delete(rig.url("/admin/hits")).send().await.expect("clear");
        assert!(resp.status().is_success());
        assert_eq!(rig.admin_get("/admin/hits").await, json!([]));
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn token_delay_lets_a_client_die_after_rotation() {
    bounded(async {
        let rig = Rig::new(partner()).await;
        let first = rig.login().await;
        rig.admin_post("/admin/token_delay", json!({"ms": 2_000})).await;
        let result = rig
            .http
            .post(rig.url("/oauth/token"))
            .query(&[("grant_type", "refresh_token"), ("refresh_token", refresh(&first).as_str())])
            .basic_auth(&rig.opts.client_id, Some(&rig.opts.client_secret))
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        assert!(result.is_err(), "the client gave up before the answer");
        let tokens = rig.admin_get("/admin/tokens").await;
        let issued = tokens["issued_refresh_tokens"].as_array().map(Vec::len);
        assert_eq!(issued, Some(2), "the new pair was issued anyway");
        assert_ne!(tokens["valid_refresh_tokens"], json!([refresh(&first)]), "and the old refresh token is dead");
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn endpoints_answer_with_the_reference_shapes() {
    bounded(async {
        // A frozen clock: no upload can happen between two calls that are compared.
        let rig = Rig::new(SimOptions { systems: 5, speed: 0.0, ..partner() }).await;
        let token = access(&rig.login().await);

        let (_, list) = rig.api("/systems", &token, &[("size", "2"), ("page", "2"), ("sort_by", "-id")]).await;
        assert_eq!(
            (list["total"].as_i64(), list["count"].as_i64(), list["current_page"].as_i64()),
            (Some(5), Some(2), Some(2))
        );
        assert_eq!(list["systems"][0]["system_id"], 4_210_003);
        assert_eq!(list["systems"][0]["energy_lifetime"], -1);

        // Micro-only system: summary agrees with its 5-minute intervals.
        let (_, summary) = rig.api("/systems/4210001/summary", &token, &[]).await;
        assert_eq!(summary["source"], "microinverters");
        assert_eq!(summary["battery_capacity_wh"], 0);
        assert_eq!(summary["evse_power"], json!([]));
        let (_, micro) = rig.api("/systems/4210001/telemetry/production_micro", &token, &[]).await;
        let intervals = micro["intervals"].as_array().expect("intervals");
        let sum: i64 = intervals.iter().map(|i| i["enwh"].as_i64().unwrap_or(0)).sum();
        assert_eq!(sum, summary["energy_today"].as_i64().expect("energy_today"));
        assert_eq!(micro["items"], "intervals");
        assert_eq!(micro["meta"]["last_report_at"], summary["last_report_at"]);
        assert!(
            intervals
                .iter()
                .all(|i| i["end_at"].as_i64().unwrap_or(0) <= summary["last_report_at"].as_i64().unwrap_or(0))
        );
        let (_, latest) = rig.api("/systems/4210001/latest_telemetry", &token, &[]).await;
        assert_eq!(latest["devices"], json!({"meters": [], "encharges": []}));

        // Metered system: meters, channels, readings and the import quirk.
        let (_, devices) = rig.api("/systems/4210002/devices", &token, &[]).await;
        let meters = devices["devices"]["meters"].as_array().expect("meters");
        assert_eq!(meters[1]["config_type"], "Net");
        assert!(devices["devices"].get("encharges").is_none());
        assert!(devices["devices"]["gateways"][0]["emu_sw_version"].as_str().is_some_and(|v| v.starts_with('D')));
        let (_, latest) = rig.api("/systems/4210002/latest_telemetry", &token, &[]).await;
        let channels = latest["devices"]["meters"].as_array().expect("meters");
        assert_eq!(channels.len(), 6);
        assert!(channels[2]["power"].is_null(), "Sydney is single phase");
        let (_, readings) = rig.api("/systems/4210002/consumption_meter_readings", &token, &[]).await;
        assert!(readings["meter_readings"][0]["serial_num"].is_string());
        let (_, readings) = rig.api("/systems/4210002/production_meter_readings", &token, &[]).await;
        assert!(readings["meter_readings"][0]["serial_number"].is_string());
        let start = (rig.sim.sim.now_secs() - 3 * 86_400).to_string();
        let (_, import) = rig
            .api(
                "/systems/4210002/energy_import_telemetry",
                &token,
                &[("granularity", "week"), ("start_at", start.as_str())],
            )
            .await;
        assert_eq!(import["total_devices"], 0);
        assert!(import["intervals"][0][0]["wh_imported"].is_i64(), "{import}");
        let (_, lifetime) = rig.api("/systems/4210002/energy_lifetime", &token, &[("production", "all")]).await;
        assert!(lifetime["meter_start_date"].is_string());
        assert_eq!(
            lifetime["production"].as_array().map(Vec::len),
            lifetime["meter_production"].as_array().map(Vec::len)
        );

        // Battery system.
        let (_, summary) = rig.api("/systems/4210003/summary", &token, &[]).await;
        assert_eq!((summary["battery_capacity_wh"].as_i64(), summary["source"].as_str()), (Some(5_000), Some("meter")));
        let (_, battery) = rig.api("/systems/4210003/telemetry/battery", &token, &[]).await;
        assert!(battery["last_reported_aggregate_soc"].as_str().is_some_and(|s| s.ends_with('%')));
        let (_, storage) = rig.api("/systems/4210003/storage_meter_readings", &token, &[]).await;
        assert!(storage["meter_readings"][0]["serial_num"].as_str().is_some_and(|s| s.ends_with("EIM4")));
        assert!(storage["meter_readings"][0]["value_charged"].is_i64());
        let serial =
            rig.api("/systems/4210003/devices", &token, &[]).await.1["devices"]["encharges"][0]["serial_number"]
                .as_str()
                .expect("battery serial")
                .to_owned();
        let (status, one) =
            rig.api(&format!("/systems/4210003/devices/encharges/{serial}/telemetry"), &token, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert!(one["last_reported_soc"].as_str().is_some_and(|s| s.ends_with('%')));

        // Consumption data on a micro-only system: 200 with nothing in it.
        let (status, empty) = rig.api("/systems/4210001/consumption_lifetime", &token, &[]).await;
        assert_eq!((status, empty["consumption"].clone()), (StatusCode::OK, json!([])));

        // A week of events: closed gateway outages and, on 4210005, the open micro event.
        let week_ago = (rig.sim.sim.now_secs() - 7 * 86_400).to_string();
        let now = rig.sim.sim.now_secs().to_string();
        let (status, events) = rig
            .api("/systems/4210005/events", &token, &[("start_time", week_ago.as_str()), ("end_time", now.as_str())])
            .await;
        assert_eq!(status, StatusCode::OK);
        let events = events["events"].as_array().expect("events");
        assert_eq!(events.iter().filter(|e| e["status"] == "open").count(), 1, "{events:?}");
        assert!(events.iter().all(|e| e["status"] == "open" || e["event_end_time"].is_i64()));
        let (_, open) = rig.api("/systems/4210005/open_events", &token, &[]).await;
        assert_eq!(open["events"].as_array().map(Vec::len), Some(1));

        let (_, summary) =
            rig.api("/systems/inverters_summary_by_envoy_or_site", &token, &[("site_id", "4210001")]).await;
        let micros = summary[0]["micro_inverters"].as_array().expect("array of groups");
        assert!(micros.len() >= 10);
        assert_eq!(micros[0]["power_produced"]["units"], "W");
        assert_eq!(micros[0]["energy"]["units"], "Wh");
        rig.sim.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn malformed_parameters_never_break_an_endpoint() {
    bounded(async {
        let rig = Rig::new(SimOptions { systems: 5, speed: 0.0, ..partner() }).await;
        let token = access(&rig.login().await);
        let endpoints = [
            "/systems",
            "/systems/4210005",
            "/systems/4210005/summary",
            "/systems/4210003/devices",
            "/systems/4210003/latest_telemetry",
            "/systems/4210004/telemetry/production_micro",
            "/systems/4210003/telemetry/production_meter",
            "/systems/4210003/telemetry/consumption_meter",
            "/systems/4210003/telemetry/battery",
            "/systems/4210003/energy_import_telemetry",
            "/systems/4210003/energy_export_telemetry",
            "/systems/4210003/energy_lifetime",
            "/systems/4210003/consumption_lifetime",
            "/systems/4210003/battery_lifetime",
            "/systems/4210003/energy_import_lifetime",
            "/systems/4210003/energy_export_lifetime",
            "/systems/4210003/production_meter_readings",
            "/systems/4210003/consumption_meter_readings",
            "/systems/4210003/storage_meter_readings",
            "/systems/inverters_summary_by_envoy_or_site",
            "/systems/retrieve_system_id",
            "/systems/4210005/devices/micros/telemetry",
            "/systems/4210005/devices/micros/%FF%FE/telemetry",
            "/systems/4210003/devices/encharges/nope/telemetry",
            "/systems/4210005/events",
            "/systems/4210005/alarms",
            "/systems/4210005/open_events",
            "/systems/4210005/open_alarms",
        ];
        let bad: &[&[(&str, &str)]] = &[
            &[("start_at", "abc"), ("granularity", "day")],
            &[("start_at", "-1")],
            &[("start_at", "99999999999999999999")],
            &[("start_at", "0"), ("granularity", "week")],
            &[("start_date", "2025-02-30")],
            &[("start_date", "1000-01-01"), ("end_date", "9999-12-31"), ("production", "all")],
            &[("start_date", "9999-12-31")],
            &[("end_at", "1"), ("end_date", "x")],
            &[("granularity", "year")],
            &[("page", "0"), ("size", "-5"), ("sort_by", "🙂")],
            &[("page", "9223372036854775807"), ("size", "100")],
            &[("summary_date", "1999-01-01"), ("start_time", "5"), ("end_time", "4")],
            &[("start_time", "1"), ("cleared", "maybe"), ("site_id", "x"), ("serial_num", "y")],
            &[("envoy_serial_number", "\u{0}\n"), ("start_time", "abc")],
        ];
        for endpoint in endpoints {
            for params in bad {
                let (status, body) = rig.api(endpoint, &token, params).await;
                assert!([200, 404, 422].contains(&status.as_u16()), "{endpoint} {params:?} answered {status}: {body}");
                assert!(body.is_object() || body.is_array(), "{endpoint} {params:?}: not JSON: {body}");
                if status == StatusCode::UNPROCESSABLE_ENTITY {
                    assert_eq!(body["code"], 422, "{endpoint} {params:?}");
                }
            }
            // Stay under the Partner minute limit: the frozen clock moves only when told.
            rig.admin_post("/admin/clock", json!({"offset_secs": 60})).await;
        }
        assert_eq!(rig.api("/systems", &token, &[]).await.0, StatusCode::OK, "still serving");
        rig.sim.shutdown().await;
    })
    .await;
}
