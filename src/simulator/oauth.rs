//! The OAuth 2.0 side (reference §6): authorize (auto-approving), token with the three grants,
//! strictly rotating refresh tokens, and the token book that `/api/v4` checks bearers against.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::Rng as _;
use serde_json::json;
use tracing::{debug, info};

use super::Simulator;
use super::errors::{Rejection, echo};
use super::params::Params;

/// Life of an authorization code, simulated seconds.
pub(crate) const CODE_TTL_SECS: i64 = 600;

/// Which kind of application a token family belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppType {
    /// Authorization-code apps (Watt/Kilowatt/Megawatt).
    System,
    /// Password-grant apps.
    Partner,
}

impl AppType {
    fn as_str(self) -> &'static str {
        match self {
            AppType::System => "system",
            AppType::Partner => "partner",
        }
    }
}

#[derive(Debug)]
struct Code {
    redirect_uri: String,
    expires_at: i64,
}

#[derive(Debug)]
struct Refresh {
    expires_at: i64,
    app_type: AppType,
}

/// All codes and tokens the simulator has issued, with their expiry in simulated seconds.
#[derive(Debug)]
pub(crate) struct TokenBook {
    codes: HashMap<String, Code>,
    access: HashMap<String, i64>,
    refresh: HashMap<String, Refresh>,
    issued_refresh: Vec<String>,
    pub(crate) access_ttl: i64,
    pub(crate) refresh_ttl: i64,
    pub(crate) deny: u32,
    pub(crate) delay_ms: u64,
}

/// A freshly issued pair.
#[derive(Debug)]
struct Issued {
    access: String,
    refresh: String,
    expires_in: i64,
    app_type: AppType,
}

impl TokenBook {
    /// An empty book issuing tokens with these lifetimes.
    pub(crate) fn new(access_ttl: i64, refresh_ttl: i64) -> Self {
        TokenBook {
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            issued_refresh: Vec::new(),
            access_ttl,
            refresh_ttl,
            deny: 0,
            delay_ms: 0,
        }
    }

    /// Whether `token` is a live access token at `now`.
    pub(crate) fn access_valid(&self, token: &str, now: i64) -> bool {
        self.access.get(token).is_some_and(|&exp| now < exp)
    }

    /// Forgets every code and token (the homeowner revoked the app).
    pub(crate) fn revoke_all(&mut self) {
        self.codes.clear();
        self.access.clear();
        self.refresh.clear();
    }

    /// `/admin/tokens` view.
    pub(crate) fn describe(&self, now: i64) -> serde_json::Value {
        let mut valid: Vec<&String> = self.refresh.iter().filter(|(_, r)| now < r.expires_at).map(|(t, _)| t).collect();
        // Report live refresh tokens in issue order.
        valid.sort_by_key(|t| self.issued_refresh.iter().position(|i| i == *t));
        json!({
            "valid_refresh_tokens": valid,
            "issued_refresh_tokens": self.issued_refresh,
            "valid_access_tokens": self.access.values().filter(|&&exp| now < exp).count(),
        })
    }

    fn new_code(&mut self, redirect_uri: &str, now: i64) -> String {
        let code = format!("sim-code-{}", random_hex(12));
        self.codes
            .insert(code.clone(), Code { redirect_uri: redirect_uri.to_owned(), expires_at: now + CODE_TTL_SECS });
        code
    }

    fn issue(&mut self, app_type: AppType, now: i64) -> Issued {
        self.prune(now);
        let access = format!("sim-at-{}", random_hex(16));
        let refresh = format!("sim-rt-{}", random_hex(16));
        self.access.insert(access.clone(), now + self.access_ttl);
        self.refresh.insert(refresh.clone(), Refresh { expires_at: now + self.refresh_ttl, app_type });
        self.issued_refresh.push(refresh.clone());
        Issued { access, refresh, expires_in: self.access_ttl, app_type }
    }

    fn prune(&mut self, now: i64) {
        self.codes.retain(|_, c| now < c.expires_at);
        self.access.retain(|_, &mut exp| now < exp);
        self.refresh.retain(|_, r| now < r.expires_at);
    }
}

/// `GET /oauth/authorize`: approves at once (or denies when told to by `/admin/deny`) and
/// redirects to `redirect_uri` with `code` (or `error`) and `state`.
pub(crate) async fn authorize(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    if params.get("client_id") != Some(sim.inner.opts.client_id.as_str()) {
        return error_page("invalid_client", "Unknown client_id");
    }
    let Some(redirect_uri) = params.get("redirect_uri").filter(|r| !r.is_empty()) else {
        return error_page("invalid_request", "A redirect_uri is required");
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return error_page("invalid_request", "The redirect_uri is not a valid URL");
    };
    let now = sim.now_secs();
    let outcome = {
        let mut book = sim.tokens();
        if params.get("response_type") != Some("code") {
            Err("unsupported_response_type")
        } else if book.deny > 0 {
            book.deny -= 1;
            Err("access_denied")
        } else {
            Ok(book.new_code(redirect_uri, now))
        }
    };
    {
        let mut pairs = target.query_pairs_mut();
        match &outcome {
            Ok(code) => {
                pairs.append_pair("code", code);
            }
            Err(error) => {
                pairs.append_pair("error", error);
                let description = if *error == "access_denied" {
                    "User denied access"
                } else {
                    "Only response_type=code is supported"
                };
                pairs.append_pair("error_description", description);
            }
        }
        if let Some(state) = params.get("state") {
            pairs.append_pair("state", state);
        }
    }
    info!(approved = outcome.is_ok(), "simulated OAuth authorization");
    (StatusCode::FOUND, [(header::LOCATION, target.to_string())]).into_response()
}

/// `GET /oauth/redirect_uri`: Enphase's default redirect page, which shows the code.
pub(crate) async fn redirect_page(RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let text = match (params.get("code"), params.get("error")) {
        (Some(code), _) => format!("Authorization code: {}", html_escape(code)),
        (None, Some(error)) => format!("Authorization failed: {}", html_escape(error)),
        _ => "No authorization code".to_owned(),
    };
    let page = format!("<!DOCTYPE html><html><body><p>{text}</p></body></html>");
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

/// Marks a response with the grant type of the token call, for the hit log.
#[derive(Debug, Clone)]
pub(crate) struct GrantTag(pub String);

/// `POST /oauth/token` (GET accepted too): parameters in the query string or a form body,
/// client authentication by HTTP Basic.
pub(crate) async fn token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut params = Params::parse(query.as_deref());
    params.merge_missing(Params::from_bytes(&body));
    let grant = params.get("grant_type").unwrap_or_default().to_owned();
    let mut response = match token_inner(&sim, &headers, &params, &grant) {
        Ok(issued) => {
            let delay = sim.tokens().delay_ms;
            if delay > 0 {
                // The tokens are already issued: a client killed now loses the new refresh token.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
                    _ = sim.inner.stop.cancelled() => {}
                }
            }
            token_body(&sim, issued)
        }
        Err(rejection) => rejection.into_response(),
    };
    response.extensions_mut().insert(GrantTag(echo(&grant)));
    response
}

fn token_inner(sim: &Simulator, headers: &HeaderMap, params: &Params, grant: &str) -> Result<Issued, Rejection> {
    check_client(sim, headers)?;
    let now = sim.now_secs();
    let mut book = sim.tokens();
    match grant {
        "authorization_code" => {
            let code = params.get("code").unwrap_or_default();
            // A code is consumed by its first use, whatever the outcome.
            let Some(stored) = book.codes.remove(code) else {
                return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid authorization code"));
            };
            if now >= stored.expires_at {
                return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Authorization code expired"));
            }
            if params.get("redirect_uri") != Some(stored.redirect_uri.as_str()) {
                return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Redirect URI mismatch."));
            }
            Ok(book.issue(AppType::System, now))
        }
        "password" => {
            let opts = &sim.inner.opts;
            if params.get("username") != Some(opts.username.as_str())
                || params.get("password") != Some(opts.password.as_str())
            {
                return Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad credentials"));
            }
            Ok(book.issue(AppType::Partner, now))
        }
        "refresh_token" => {
            let presented = params.get("refresh_token").unwrap_or_default();
            // Strict rotation: the presented token dies now, whether or not it was still good.
            match book.refresh.remove(presented) {
                Some(old) if now < old.expires_at => {
                    debug!("rotating refresh token");
                    Ok(book.issue(old.app_type, now))
                }
                _ => Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token")),
            }
        }
        "" => Err(oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing grant type")),
        other => Err(oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("Unsupported grant type: {}", echo(other)),
        )),
    }
}

/// Checks `Authorization: Basic base64(client_id:client_secret)`.
fn check_client(sim: &Simulator, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return Err(oauth_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Full authentication is required to access this resource",
        ));
    };
    let decoded = value
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .and_then(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let opts = &sim.inner.opts;
    match decoded.as_deref().and_then(|s| s.split_once(':')) {
        Some((id, secret)) if id == opts.client_id && secret == opts.client_secret => Ok(()),
        _ => Err(oauth_error(StatusCode::UNAUTHORIZED, "unauthorized", "Bad client credentials")),
    }
}

fn token_body(sim: &Simulator, issued: Issued) -> Response {
    let body = json!({
        "access_token": issued.access,
        "token_type": "bearer",
        "refresh_token": issued.refresh,
        "expires_in": issued.expires_in,
        "scope": "read write",
        "enl_uid": sim.inner.enl_uid,
        "enl_cid": "5",
        "enl_password_last_changed": sim.inner.password_changed.to_string(),
        "is_internal_app": false,
        "app_type": issued.app_type.as_str(),
        "jti": uuid_like(),
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// RFC 6749 style error body.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Rejection {
    let body = json!({ "error": error, "error_description": description });
    (status, axum::Json(body)).into_response().into()
}

/// The plain page `/oauth/authorize` shows instead of redirecting when the request is unusable.
fn error_page(error: &str, description: &str) -> Response {
    let page = format!(
        "<!DOCTYPE html><html><body><h1>OAuth Error</h1><p>error=\"{error}\", error_description=\"{description}\"</p></body></html>"
    );
    (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response()
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

/// A random version-4 UUID string, for `jti`.
fn uuid_like() -> String {
    let mut rng = rand::rng();
    let a: u32 = rng.random();
    let b: u16 = rng.random();
    let c: u16 = rng.random::<u16>() & 0x0fff | 0x4000;
    let d: u16 = rng.random::<u16>() & 0x3fff | 0x8000;
    let e: u64 = rng.random::<u64>() & 0xffff_ffff_ffff;
    format!("{a:08x}-{b:04x}-{c:04x}-{d:04x}-{e:012x}")
}

fn html_escape(raw: &str) -> String {
    echo(raw).replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_kills_the_old_refresh_token() {
        let mut book = TokenBook::new(100, 1_000);
        let first = book.issue(AppType::System, 0);
        assert!(book.access_valid(&first.access, 99));
        assert!(!book.access_valid(&first.access, 100), "expired at its ttl");
        assert!(book.refresh.remove(&first.refresh).is_some());
        let second = book.issue(AppType::System, 10);
        assert!(!book.refresh.contains_key(&first.refresh));
        assert!(book.refresh.contains_key(&second.refresh));
        assert_eq!(book.issued_refresh, vec![first.refresh.clone(), second.refresh.clone()]);
        book.revoke_all();
        assert!(!book.access_valid(&second.access, 11));
    }

    #[test]
    fn ids_look_right() {
        let jti = uuid_like();
        assert_eq!(jti.len(), 36);
        assert_eq!(jti.as_bytes()[14], b'4');
        assert_eq!(random_hex(4).len(), 8);
    }
}
