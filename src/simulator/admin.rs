//! Test controls under `/admin` (JSON in, JSON out): inject faults, revoke tokens, force 429s,
//! deny authorizations, read the hit log, steer the simulated clock and inspect tokens.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::info;

use super::Simulator;
use super::api::kind_name;
use super::errors::Rejection;
use super::gate::{FaultKind, Target};
use super::quota::Period;

/// Largest `count` accepted, to keep queues bounded.
const MAX_COUNT: u64 = 1_000_000;

fn bad_request(message: impl Into<String>) -> Rejection {
    let body = json!({ "error": message.into() });
    (StatusCode::BAD_REQUEST, Json(body)).into_response().into()
}

/// The request body as a JSON object; an empty body is `{}`.
fn object(body: &Bytes) -> Result<serde_json::Map<String, Value>, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(bad_request("expected a JSON object")),
        Err(err) => Err(bad_request(format!("invalid JSON: {err}"))),
    }
}

/// A non-negative integer field, `default` when absent.
fn count(map: &serde_json::Map<String, Value>, key: &str, default: u64) -> Result<u64, Rejection> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= MAX_COUNT)
            .ok_or_else(|| bad_request(format!("{key} must be an integer between 0 and {MAX_COUNT}"))),
    }
}

fn string<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

macro_rules! try_or_return {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(rejection) => return rejection.into_response(),
        }
    };
}

/// `POST /admin/faults {"kind", "count", "target": "api"|"token"}`: the next `count` calls to
/// the target fail that way. `"token_faults": true` is the same as `"target": "token"`.
pub(crate) async fn faults(State(sim): State<Simulator>, body: Bytes) -> Response {
    let map = try_or_return!(object(&body));
    let Some(kind) = string(&map, "kind").and_then(FaultKind::parse) else {
        return bad_request("kind must be one of 500, 500_alt, 503, html, hang").into_response();
    };
    let n = try_or_return!(count(&map, "count", 1));
    let target = match (string(&map, "target"), map.get("token_faults").and_then(Value::as_bool)) {
        (Some(raw), _) => match Target::parse(raw) {
            Some(t) => t,
            None => return bad_request("target must be api or token").into_response(),
        },
        (None, Some(true)) => Target::Token,
        (None, _) => Target::Api,
    };
    sim.faults().push(target, kind, n as usize);
    info!(kind = kind.as_str(), count = n, ?target, "simulator faults queued");
    Json(json!({ "queued": n, "kind": kind.as_str(), "target": if target == Target::Api { "api" } else { "token" } }))
        .into_response()
}

/// `DELETE /admin/faults`: drops every queued fault.
pub(crate) async fn clear_faults(State(sim): State<Simulator>) -> Response {
    sim.faults().clear();
    Json(json!({ "cleared": true })).into_response()
}

/// `POST /admin/revoke`: kills every access token, refresh token and pending code.
pub(crate) async fn revoke(State(sim): State<Simulator>) -> Response {
    sim.tokens().revoke_all();
    info!("simulator tokens revoked");
    Json(json!({ "revoked": true })).into_response()
}

/// `POST /admin/force429 {"period": "minute"|"month", "count"}`.
pub(crate) async fn force429(State(sim): State<Simulator>, body: Bytes) -> Response {
    let map = try_or_return!(object(&body));
    let Some(period) = string(&map, "period").or(Some("minute")).and_then(Period::parse) else {
        return bad_request("period must be minute or month").into_response();
    };
    let n = try_or_return!(count(&map, "count", 1));
    sim.quota().force(period, n as usize);
    Json(json!({ "queued": n, "period": period.as_str() })).into_response()
}

/// `POST /admin/deny {"count"}`: the next `count` authorizations redirect with `access_denied`.
pub(crate) async fn deny(State(sim): State<Simulator>, body: Bytes) -> Response {
    let map = try_or_return!(object(&body));
    let n = try_or_return!(count(&map, "count", 1));
    sim.tokens().deny = u32::try_from(n).unwrap_or(u32::MAX);
    Json(json!({ "deny": n })).into_response()
}

/// `GET /admin/hits`: every counted request, in arrival order.
pub(crate) async fn hits(State(sim): State<Simulator>) -> Response {
    let body = sim.hits().to_json();
    Json(body).into_response()
}

/// `DELETE /admin/hits`.
pub(crate) async fn clear_hits(State(sim): State<Simulator>) -> Response {
    sim.hits().clear();
    Json(json!({ "cleared": true })).into_response()
}

/// `GET /admin/clock`.
pub(crate) async fn clock(State(sim): State<Simulator>) -> Response {
    Json(json!({ "now": sim.now_secs(), "now_ms": sim.now_ms(), "speed": sim.speed() })).into_response()
}

/// `POST /admin/clock {"speed", "offset_secs"}`: either may be left out; the offset is added to
/// the simulated now, and a speed change keeps simulated time continuous.
pub(crate) async fn set_clock(State(sim): State<Simulator>, body: Bytes) -> Response {
    let map = try_or_return!(object(&body));
    let speed = match map.get("speed") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_f64().filter(|s| (0.0..=super::MAX_SPEED).contains(s)) {
            Some(s) => Some(s),
            None => {
                return bad_request("speed must be a number between 0 and 1000000").into_response();
            }
        },
    };
    let offset = match map.get("offset_secs") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64().filter(|o| o.abs() <= 100 * 365 * 86_400) {
            Some(o) => o,
            None => {
                return bad_request("offset_secs must be an integer within a century").into_response();
            }
        },
    };
    sim.adjust_clock(speed, offset);
    info!(speed = sim.speed(), offset_secs = offset, now = sim.now_secs(), "simulated clock adjusted");
    Json(json!({ "now": sim.now_secs(), "now_ms": sim.now_ms(), "speed": sim.speed() })).into_response()
}

/// `GET /admin/tokens`.
pub(crate) async fn tokens(State(sim): State<Simulator>) -> Response {
    let now = sim.now_secs();
    let body = sim.tokens().describe(now);
    Json(body).into_response()
}

/// `POST /admin/token_ttl {"access_secs", "refresh_secs"}`: lifetimes of tokens issued from now on.
pub(crate) async fn token_ttl(State(sim): State<Simulator>, body: Bytes) -> Response {
    let map = try_or_return!(object(&body));
    let ttl = |key: &str| match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_i64()
            .filter(|s| (1..=10 * 365 * 86_400).contains(s))
            .map(Some)
            .ok_or_else(|| bad_request(format!("{key} must be between 1 and 10 years in seconds"))),
    };
    let access = try_or_return!(ttl("access_secs"));
    let refresh = try_or_return!(ttl("refresh_secs"));
    let mut book = sim.tokens();
    if let Some(a) = access {
        book.access_ttl = a;
    }
    if let Some(r) = refresh {
        book.refresh_ttl = r;
    }
    Json(json!({ "access_secs": book.access_ttl, "refresh_secs": book.refresh_ttl })).into_response()
}

/// `POST /admin/token_delay {"ms"}`: delays each `/oauth/token` answer after issuing the tokens.
pub(crate) async fn token_delay(State(sim): State<Simulator>, body: Bytes) -> Response {
    let map = try_or_return!(object(&body));
    let ms = try_or_return!(count(&map, "ms", 0));
    sim.tokens().delay_ms = ms;
    Json(json!({ "ms": ms })).into_response()
}

/// `GET /admin/state`: a summary of the simulator.
pub(crate) async fn state(State(sim): State<Simulator>) -> Response {
    let now = sim.now_secs();
    let opts = &sim.inner.opts;
    let systems: Vec<Value> = sim
        .fleet()
        .systems()
        .iter()
        .take(100)
        .map(|s| {
            json!({
                "system_id": s.system_id(),
                "kind": kind_name(s.kind()),
                "timezone": s.timezone(),
                "connection_type": s.connection().as_str(),
                "status": s.status(now),
                "last_report_at": s.last_upload_at(now),
            })
        })
        .collect();
    let quota = sim.quota().state();
    let faults = sim.faults().state();
    let hits = sim.hits().len();
    Json(json!({
        "now": now,
        "speed": sim.speed(),
        "plan": opts.plan.to_string(),
        "limits": { "per_minute": opts.plan.per_minute(), "per_month": opts.plan.per_month() },
        "fleet_size": sim.fleet().len(),
        "systems": systems,
        "quota": quota,
        "faults": faults,
        "hits": hits,
    }))
    .into_response()
}
