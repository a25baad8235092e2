//! The status and consent page of `enphase-mqtt run` (`http.listen`): the real binary, the
//! simulator over loopback HTTP, a real Mosquitto, and a headless Chromium for the browser tests.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::broker::{Broker, Probe, free_port, retained};
use common::*;
use enphase_mqtt::simulator::{SimHandle, SimOptions, SimPlan};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);
const A: u64 = 4_210_001;
const B: u64 = 4_210_002;
const C: u64 = 4_210_003;
/// Where Debian's `chromium` package puts the browser (CI installs it).
const CHROMIUM: &str = "/usr/bin/chromium";

/// The simulator, a config with `http.listen`, and a broker. The config uses the
/// authorization-code flow, so a revoked app really needs the homeowner again.
struct Rig {
    sim: SimHandle,
    opts: SimOptions,
    setup: Setup,
    broker: Broker,
    http_port: u16,
}

impl Rig {
    /// `min_poll` is `enphase.min_poll_interval_secs`; `login` stores tokens first (by the code flow).
    async fn new(systems: usize, min_poll: u64, login: bool) -> Self {
        let opts = SimOptions { systems, plan: SimPlan::Partner, ..SimOptions::default() };
        let sim = sim(opts.clone()).await;
        let broker = Broker::start();
        let http_port = free_port();
        let enphase = format!("  min_poll_interval_secs: {min_poll}\n");
        let top = format!(
            "mqtt:\n  host: 127.0.0.1\n  port: {}\n  keep_alive: 5\nhttp:\n  listen: 127.0.0.1:{http_port}\n",
            broker.port
        );
        let setup = Setup::with_top(&sim, &opts, &enphase, &top);
        let rig = Self { sim, opts, setup, broker, http_port };
        if login {
            let code = rig.code_for("https://api.enphaseenergy.com/oauth/redirect_uri").await;
            let out = rig.setup.run(&["auth", "code", &code]).await;
            assert_eq!(out.code, Some(0), "{out:?}");
        }
        rig
    }

    /// A fresh authorization code from the simulator, as `auth url` + a browser would get one.
    async fn code_for(&self, redirect_uri: &str) -> String {
        let url = url::Url::parse_with_params(
            &format!("{}/oauth/authorize", self.sim.base_url),
            &[("response_type", "code"), ("client_id", &self.opts.client_id), ("redirect_uri", redirect_uri)],
        )
        .unwrap();
        let resp = http().get(url).send().await.unwrap();
        assert_eq!(resp.status(), 302);
        query_param(resp.headers()["location"].to_str().unwrap(), "code").expect("a code")
    }

    fn page(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.http_port)
    }

    fn start(&self) -> Daemon {
        Daemon::spawn(&self.setup)
    }
}

/// One query parameter of a URL.
fn query_param(url: &str, key: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
}

/// GET `url` with `headers`; status and body. Redirects are not followed.
async fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String, reqwest::header::HeaderMap) {
    let mut req = http().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

/// Polls `url` until `pred(status, body)` holds; the last body. Panics after [`WAIT`].
async fn wait_page(url: &str, what: &str, pred: impl Fn(u16, &str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(resp) = http().get(url).timeout(Duration::from_secs(5)).send().await {
            let status = resp.status().as_u16();
            last = format!("{status}: {}", resp.text().await.unwrap_or_default());
            if pred(status, &last[5..]) {
                return last[5..].to_string();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what} at {url}; last answer {last}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Follows the consent the way a browser would, from `auth/start` (with `headers`) to the
/// simulator and back to the callback; the callback's status and page. `callback_base` replaces
/// the scheme and host of the redirect (for a reverse proxy that the test plays itself).
async fn consent(start_url: &str, headers: &[(&str, &str)], callback_base: Option<&str>) -> (u16, String) {
    let (status, _, h) = get(start_url, headers).await;
    assert_eq!(status, 302, "auth/start redirects to Enphase");
    let authorize = h["location"].to_str().unwrap().to_string();
    let (status, _, h) = get(&authorize, &[]).await;
    assert_eq!(status, 302, "the simulator approves and redirects back");
    let mut back = h["location"].to_str().unwrap().to_string();
    if let Some(base) = callback_base {
        let url = url::Url::parse(&back).unwrap();
        back = format!("{base}/auth/callback?{}", url.query().unwrap_or_default());
    }
    let (status, page, _) = get(&back, headers).await;
    (status, page)
}

/// Parses Prometheus text: sample name → (labels → value). Panics on a malformed line or a
/// sample without `# HELP` and `# TYPE`.
fn parse_metrics(text: &str) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut typed = BTreeSet::new();
    let mut helped = BTreeSet::new();
    let mut out: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["gauge", "counter"].contains(&kind), "{line}");
            typed.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty(), "{line}");
            helped.insert(name.to_string());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("sample line: {line}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("a number in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => {
                    let labels = labels.strip_suffix('}').unwrap_or_else(|| panic!("closed labels: {line}"));
                    for pair in labels.split(',') {
                        let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("label pair: {line}"));
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                        assert!(v.starts_with('"') && v.ends_with('"') && v.len() >= 2, "{line}");
                    }
                    (name, labels.to_string())
                }
                None => (series, String::new()),
            };
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            assert!(typed.contains(name) && helped.contains(name), "{name} has no # HELP / # TYPE before it");
            out.entry(name.to_string()).or_default().insert(labels, value);
        }
    }
    out
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The `data-…` value in the page's row of system `id`.
fn row_of(page: &str, id: u64) -> Option<String> {
    let start = page.find(&format!("data-system-id=\"{id}\""))?;
    let end = page[start..].find("</tr>")? + start;
    Some(page[start..end].to_string())
}

/// Waits until the broker holds a state for each of `ids` and the page shows the same production
/// power and energy today for each; the page.
async fn page_matches_broker(rig: &Rig, ids: &[u64]) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let page = get(&rig.page("/"), &[]).await.1;
        let held = retained(rig.broker.port, &["enphase/+/state"]).await;
        let mut mismatch = None;
        for id in ids {
            let Some(state) = held.get(&format!("enphase/{id}/state")).map(|s| json(s)) else {
                mismatch = Some(format!("no state for {id} yet"));
                break;
            };
            let Some(row) = row_of(&page, *id) else {
                mismatch = Some(format!("no row for {id} yet"));
                break;
            };
            let want = [
                format!("data-w=\"{}\"", state["production_power_w"]),
                format!("data-wh=\"{}\"", state["production_energy_today_wh"]),
                format!("<strong>{}</strong>", state["name"].as_str().unwrap()),
            ];
            if let Some(w) = want.iter().find(|w| !row.contains(w.as_str())) {
                mismatch = Some(format!("row {id} lacks {w}: {row}"));
                break;
            }
        }
        match mismatch {
            None => return page,
            Some(why) => assert!(tokio::time::Instant::now() < deadline, "{why}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_page_shows_each_system_the_budget_and_the_authorization() {
    let rig = Rig::new(3, 600, true).await;
    let bridge = rig.start();
    wait_page(&rig.page("/healthz"), "a healthy bridge", |s, _| s == 200).await;
    let page = page_matches_broker(&rig, &[A, B, C]).await;

    assert!(page.contains("id=\"authorization\" data-state=\"ok\""), "{page}");
    assert!(!page.contains("Connect to Enphase"), "no button while authorized");
    assert!(page.contains("id=\"mqtt\" data-connected=\"true\""), "{page}");
    let value = |id: &str| -> u64 {
        let at = page.find(&format!("id=\"{id}\" data-value=\"")).unwrap_or_else(|| panic!("{id} in {page}"));
        let rest = &page[at + id.len() + 18..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    };
    let (used, left) = (value("hits-month-used"), value("hits-month-left"));
    assert!(used > 0, "the polls were counted");
    assert_eq!(used + left, 1_500_000, "used and left add up to the partner plan's month");
    assert!(page.contains("1,500,000"), "the limit is shown readably");
    assert!(page.contains("id=\"next-poll\">20"), "the next poll is an ISO time: {page}");
    // Relative links only, and every system's last report with "ago" (or "now", when the page was
    // made in the second of an upload).
    assert!(page.contains("href=\"./metrics\"") && !page.contains("href=\"/"), "{page}");
    for id in [A, B, C] {
        let row = row_of(&page, id).unwrap();
        assert!((row.contains(" ago</span>") || row.contains(">now</span>")) && row.contains("data-epoch=\""), "{row}");
    }
    assert_no_secrets(&page, &rig.opts, Some(&rig.setup.tokens()));
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn healthz_and_metrics_follow_a_revocation_and_the_consent_button_repairs_it() {
    let rig = Rig::new(1, 2, true).await;
    let bridge = rig.start();
    let ok = wait_page(&rig.page("/healthz"), "a healthy bridge", |s, _| s == 200).await;
    assert_eq!(ok, "ok\n");

    let text = wait_page(&rig.page("/metrics"), "a first poll in the metrics", |s, body| {
        s == 200 && body.contains("enphase_mqtt_last_success_timestamp_seconds{")
    })
    .await;
    let m = parse_metrics(&text);
    for name in [
        "enphase_mqtt_hits_month_used",
        "enphase_mqtt_hits_month_left",
        "enphase_mqtt_polls_total",
        "enphase_mqtt_mqtt_disconnects_total",
        "enphase_mqtt_last_success_timestamp_seconds",
        "enphase_mqtt_token_expiry_timestamp_seconds",
    ] {
        assert!(m.contains_key(name), "{name} missing from\n{text}");
    }
    assert!(text.contains("# TYPE enphase_mqtt_api_errors_total counter"), "{text}");
    assert!(m["enphase_mqtt_hits_month_used"][""] > 0.0);
    assert_eq!(m["enphase_mqtt_hits_month_used"][""] + m["enphase_mqtt_hits_month_left"][""], 1_500_000.0);
    assert!(m["enphase_mqtt_polls_total"][""] >= 1.0);
    assert_eq!(m["enphase_mqtt_mqtt_disconnects_total"][""], 0.0);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let last = m["enphase_mqtt_last_success_timestamp_seconds"][&format!("system_id=\"{A}\"")];
    assert!((now - last).abs() < 120.0, "last success {last} is recent (now {now})");
    let expiry = m["enphase_mqtt_token_expiry_timestamp_seconds"][""];
    assert_eq!(expiry as i64, rig.setup.tokens()["expires_at"].as_i64().unwrap());

    // The homeowner revokes the app: the next poll fails for authorization.
    let before = rig.setup.tokens();
    admin_post(&rig.sim, "/admin/revoke", json!({})).await;
    // The scheduler's next poll may be a whole upload away: the Refresh button polls now.
    let probe = Probe::connect(rig.broker.port, &[]).await;
    probe.publish("enphase/bridge/request/refresh", "", false).await;
    let reason = wait_page(&rig.page("/healthz"), "503 after the revocation", |s, _| s == 503).await;
    assert!(reason.starts_with("unhealthy: Enphase authorization needed"), "{reason}");
    assert_eq!(reason.lines().count(), 1, "one line: {reason}");
    assert!(rig.setup.tokens()["reauth_needed"].is_string(), "the token file says so");
    let text = get(&rig.page("/metrics"), &[]).await.1;
    let m = parse_metrics(&text);
    assert!(m["enphase_mqtt_api_errors_total"]["kind=\"authorization_needed\""] >= 1.0, "{text}");
    assert_eq!(m["enphase_mqtt_authorization_ok"][""], 0.0);

    let page = get(&rig.page("/"), &[]).await.1;
    assert!(page.contains("data-state=\"needed\""), "{page}");
    assert!(page.contains("<a class=\"button\" id=\"connect\" href=\"./auth/start\">Connect to Enphase</a>"), "{page}");

    // The button: Enphase's consent, back to the callback, tokens stored.
    let (status, done) = consent(&rig.page("/auth/start"), &[], None).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("<h1 id=\"title\">Connected</h1>"), "{done}");
    assert!(done.contains("href=\"../\""), "the link back is relative: {done}");
    let after = rig.setup.tokens();
    assert_ne!(after["refresh_token"], before["refresh_token"], "new tokens were stored");
    assert!(after["reauth_needed"].is_null());
    assert_eq!(after["flow"], "authorization_code");
    let valid = admin_get(&rig.sim, "/admin/tokens").await;
    assert_eq!(valid["valid_refresh_tokens"], json!([after["refresh_token"]]));

    // The running bridge picks them up by itself.
    wait_page(&rig.page("/healthz"), "200 again after the consent", |s, _| s == 200).await;
    let page = get(&rig.page("/"), &[]).await.1;
    assert!(page.contains("data-state=\"ok\""), "{page}");
    let log = bridge.log();
    assert_no_secrets(&format!("{log}{page}{done}{text}"), &rig.opts, Some(&after));
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_state_or_a_refusal_stores_nothing() {
    let rig = Rig::new(1, 600, true).await;
    let bridge = rig.start();
    wait_page(&rig.page("/healthz"), "a healthy bridge", |s, _| s == 200).await;
    let before = rig.setup.tokens();

    // A callback this page did not start.
    let code = rig.code_for(&rig.page("/auth/callback")).await;
    let (status, page, _) = get(&rig.page(&format!("/auth/callback?code={code}&state=forged")), &[]).await;
    assert_eq!(status, 400);
    assert!(page.contains("Start again") && page.contains("Nothing was stored"), "{page}");
    let (status, _, _) = get(&rig.page("/auth/callback"), &[]).await;
    assert_eq!(status, 400, "no state at all");

    // The homeowner refuses.
    admin_post(&rig.sim, "/admin/deny", json!({"count": 1})).await;
    let (status, page) = consent(&rig.page("/auth/start"), &[], None).await;
    assert_eq!(status, 403);
    assert!(page.contains("Not connected") && page.contains("access_denied"), "{page}");
    assert_eq!(rig.setup.tokens(), before, "the tokens were left alone");

    // Odd input answers with a page, never a crash.
    for path in ["/auth/callback?state=%ZZ&code=%00", "/nope", "/auth/callback?error=<script>&state=x"] {
        let (status, page, _) = get(&rig.page(path), &[]).await;
        assert!((400..500).contains(&status), "{path}: {status}");
        assert!(!page.contains("<script>"), "escaped: {page}");
    }
    wait_page(&rig.page("/healthz"), "still healthy", |s, _| s == 200).await;
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn behind_home_assistant_ingress_links_and_the_redirect_carry_the_prefix() {
    let rig = Rig::new(1, 600, true).await;
    let bridge = rig.start();
    wait_page(&rig.page("/healthz"), "a healthy bridge", |s, _| s == 200).await;
    let prefix = "/api/hassio_ingress/Zx8_tok-12";
    let headers =
        [("X-Ingress-Path", prefix), ("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "ha.example.org:8123")];
    let (status, page, _) = get(&rig.page("/"), &headers).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("href=\"{prefix}/metrics\"")), "{page}");
    assert!(!page.contains("href=\"./"), "no relative link behind ingress: {page}");

    let (status, _, h) = get(&rig.page("/auth/start"), &headers).await;
    assert_eq!(status, 302);
    let authorize = h["location"].to_str().unwrap();
    assert!(authorize.starts_with(&format!("{}/oauth/authorize?", rig.sim.base_url)), "{authorize}");
    assert_eq!(
        query_param(authorize, "redirect_uri").unwrap(),
        format!("https://ha.example.org:8123{prefix}/auth/callback")
    );
    assert_eq!(query_param(authorize, "client_id").unwrap(), rig.opts.client_id);
    assert_eq!(query_param(authorize, "state").unwrap().len(), 32);

    // The test plays the ingress proxy: Enphase's redirect to Home Assistant reaches this page.
    let before = rig.setup.tokens();
    let (status, done) = consent(&rig.page("/auth/start"), &headers, Some(&rig.page(""))).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains(&format!("href=\"{prefix}/\"")), "{done}");
    assert_ne!(rig.setup.tokens()["refresh_token"], before["refresh_token"]);
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_start_without_tokens_waits_for_the_consent_on_the_page() {
    let rig = Rig::new(2, 600, false).await;
    let bridge = rig.start();
    let page = wait_page(&rig.page("/"), "the page before any consent", |s, _| s == 200).await;
    assert!(page.contains("data-state=\"needed\"") && page.contains("Connect to Enphase"), "{page}");
    let (status, why, _) = get(&rig.page("/healthz"), &[]).await;
    assert_eq!(status, 503);
    assert!(why.contains("authorization needed"), "{why}");

    let (status, done) = consent(&rig.page("/auth/start"), &[], None).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.contains("Connected"));
    assert_eq!(rig.setup.tokens()["flow"], "authorization_code");
    // The bridge starts by itself and the same address keeps serving the page.
    wait_page(&rig.page("/healthz"), "the bridge running", |s, _| s == 200).await;
    page_matches_broker(&rig, &[A, B]).await;
    assert!(!bridge.log().contains("ERROR"), "{}", bridge.log());
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_page_address_is_a_one_line_error() {
    let rig = Rig::new(1, 600, true).await;
    let _taken = std::net::TcpListener::bind(("127.0.0.1", rig.http_port)).unwrap();
    let out = rig.setup.run(&["run"]).await;
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.starts_with(&format!("enphase-mqtt: http.listen: cannot listen on 127.0.0.1:{}: ", rig.http_port)),
        "{}",
        out.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// In a real browser
// ---------------------------------------------------------------------------------------------

/// `chromium --headless --dump-dom url`: the DOM after loading (and following redirects).
async fn chromium_dom(url: &str, profile: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the browser tests need Debian's chromium package (apt-get install chromium)"
    );
    let child = tokio::process::Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let out = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium finishes within 90 s")
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && dom.contains("</html>"),
        "chromium failed ({:?}): {}\n{dom}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_renders_the_page_and_completes_the_consent() {
    let rig = Rig::new(2, 600, true).await;
    let bridge = rig.start();
    wait_page(&rig.page("/healthz"), "a healthy bridge", |s, _| s == 200).await;
    page_matches_broker(&rig, &[A, B]).await;
    let profile = tempfile::tempdir().unwrap();

    let dom = chromium_dom(&rig.page("/"), profile.path()).await;
    let held = retained(rig.broker.port, &["enphase/+/state"]).await;
    for id in [A, B] {
        let state = json(&held[&format!("enphase/{id}/state")]);
        let row = row_of(&dom, id).unwrap_or_else(|| panic!("system {id} in the DOM:\n{dom}"));
        assert!(row.contains(state["name"].as_str().unwrap()), "{row}");
        assert!(row.contains(&format!("data-w=\"{}\"", state["production_power_w"])), "{row}");
    }
    assert!(dom.contains("<title>enphase-mqtt</title>"), "{dom}");
    assert!(dom.contains("Connected to the broker"), "{dom}");

    // The consent through the browser: our 302, the simulator's 302, our callback.
    let before = rig.setup.tokens();
    let dom = chromium_dom(&rig.page("/auth/start"), profile.path()).await;
    assert!(dom.contains("<h1 id=\"title\">Connected</h1>"), "{dom}");
    let after = rig.setup.tokens();
    assert_ne!(after["refresh_token"], before["refresh_token"], "the browser's consent stored new tokens");
    assert_no_secrets(&dom, &rig.opts, Some(&after));
    wait_page(&rig.page("/healthz"), "still healthy", |s, _| s == 200).await;
    assert_eq!(bridge.sigterm().await, Some(0));
}
