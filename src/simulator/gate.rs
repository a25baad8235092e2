//! The front door of `/api/v4` and `/oauth/token`: hit log, quota, injected faults, API key,
//! bearer token and plan checks, in that order. Every request through here is a counted hit.

use std::collections::VecDeque;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tracing::debug;

use super::errors;
use super::oauth::GrantTag;
use super::params::Params;
use super::quota;
use super::{SimPlan, Simulator};

/// Most entries the hit log keeps; older ones are dropped first.
const MAX_HITS: usize = 200_000;
/// How long a `hang` fault holds a request when the server is not shut down first.
const HANG_SECS: u64 = 3_600;
/// Longest path stored in the hit log.
const MAX_LOGGED_PATH: usize = 200;

/// Which counted endpoint group a request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Anything under `/api/v4`.
    Api,
    /// `/oauth/token`.
    Token,
}

impl Target {
    /// Parses `api` or `token`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "api" => Some(Target::Api),
            "token" => Some(Target::Token),
            _ => None,
        }
    }
}

/// A way for a request to fail, injected through `/admin/faults`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// 500 with the object envelope.
    Internal,
    /// 500 with the `errorCode`/`errorMessages` envelope.
    InternalAlt,
    /// 503 with a small JSON body.
    Unavailable,
    /// 503 with the HTML "heavy load (queue full)" page.
    Html,
    /// No answer until the simulator shuts down (or an hour passes), then 503.
    Hang,
}

impl FaultKind {
    /// Parses `500`, `500_alt`, `503`, `html` or `hang`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "500" => Some(FaultKind::Internal),
            "500_alt" => Some(FaultKind::InternalAlt),
            "503" => Some(FaultKind::Unavailable),
            "html" => Some(FaultKind::Html),
            "hang" => Some(FaultKind::Hang),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Internal => "500",
            FaultKind::InternalAlt => "500_alt",
            FaultKind::Unavailable => "503",
            FaultKind::Html => "html",
            FaultKind::Hang => "hang",
        }
    }
}

/// Queued faults for each target.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    api: VecDeque<FaultKind>,
    token: VecDeque<FaultKind>,
}

impl Faults {
    /// Queues `count` faults of `kind` after those already queued for `target`.
    pub(crate) fn push(&mut self, target: Target, kind: FaultKind, count: usize) {
        self.queue(target).extend(std::iter::repeat_n(kind, count));
    }

    /// Drops every queued fault.
    pub(crate) fn clear(&mut self) {
        self.api.clear();
        self.token.clear();
    }

    fn take(&mut self, target: Target) -> Option<FaultKind> {
        self.queue(target).pop_front()
    }

    fn queue(&mut self, target: Target) -> &mut VecDeque<FaultKind> {
        match target {
            Target::Api => &mut self.api,
            Target::Token => &mut self.token,
        }
    }

    /// Pending counts for `/admin/state`.
    pub(crate) fn state(&self) -> Value {
        let names = |q: &VecDeque<FaultKind>| q.iter().map(|k| k.as_str()).collect::<Vec<_>>();
        json!({ "api": names(&self.api), "token": names(&self.token) })
    }
}

/// One counted request.
#[derive(Debug, Clone)]
struct Hit {
    seq: u64,
    at: i64,
    real_ms: i64,
    method: String,
    path: String,
    status: Option<u16>,
    grant: Option<String>,
}

/// Every counted request in arrival order (never with keys or tokens: the query is not kept).
#[derive(Debug, Default)]
pub(crate) struct HitLog {
    hits: VecDeque<Hit>,
    next_seq: u64,
}

impl HitLog {
    fn begin(&mut self, at: i64, real_ms: i64, method: &str, path: &str) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        if self.hits.len() >= MAX_HITS {
            self.hits.pop_front();
        }
        let path = path.chars().take(MAX_LOGGED_PATH).collect();
        self.hits.push_back(Hit { seq, at, real_ms, method: method.to_owned(), path, status: None, grant: None });
        seq
    }

    fn finish(&mut self, seq: u64, status: u16, grant: Option<String>) {
        // Usually the last entry; a cleared log simply no longer has it.
        if let Some(hit) = self.hits.iter_mut().rev().find(|h| h.seq == seq) {
            hit.status = Some(status);
            hit.grant = grant;
        }
    }

    /// Forgets all entries.
    pub(crate) fn clear(&mut self) {
        self.hits.clear();
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.hits.len()
    }

    /// The `/admin/hits` array. `status` is null while a request is still being answered.
    pub(crate) fn to_json(&self) -> Value {
        Value::Array(
            self.hits
                .iter()
                .map(|h| {
                    let mut entry = json!({
                        "at": h.at,
                        "real_ms": h.real_ms,
                        "method": h.method,
                        "path": h.path,
                        "status": h.status,
                    });
                    if let (Some(grant), Some(map)) = (&h.grant, entry.as_object_mut()) {
                        map.insert("grant".into(), Value::String(grant.clone()));
                    }
                    entry
                })
                .collect(),
        )
    }
}

/// Middleware on the whole router; only `/api/v4/…` and `/oauth/token` are counted and checked.
pub(crate) async fn gate(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let target = if path == "/oauth/token" {
        Target::Token
    } else if path == "/api/v4" || path.starts_with("/api/v4/") {
        Target::Api
    } else {
        return next.run(req).await;
    };
    let path = path.to_owned();
    let method = req.method().to_string();
    let at = sim.now_secs();
    let seq = sim.hits().begin(at, sim.real_ms(), &method, &path);

    let response = checked(&sim, target, &path, req, next).await;

    let status = response.status().as_u16();
    let grant = response.extensions().get::<GrantTag>().map(|g| g.0.clone());
    sim.hits().finish(seq, status, grant);
    debug!(%method, %path, status, "simulated Enlighten request");
    response
}

async fn checked(sim: &Simulator, target: Target, path: &str, req: Request, next: Next) -> Response {
    let plan = sim.inner.opts.plan;
    let exceeded = sim.quota().record(sim.now_secs(), plan);
    if let Some(exceeded) = exceeded {
        return quota::too_many_requests(plan, exceeded);
    }
    let fault = sim.faults().take(target);
    if let Some(kind) = fault {
        return fault_response(sim, kind).await;
    }
    if target == Target::Api {
        let params = Params::parse(req.uri().query());
        if !key_ok(sim, &params, req.headers()) || !bearer_ok(sim, req.headers()) {
            return errors::not_authorized().into_response();
        }
        // Device-level monitoring is outside the Watt plan's access controls: also a 401.
        if plan == SimPlan::Watt && is_device_level(path) {
            return errors::not_authorized().into_response();
        }
    }
    next.run(req).await
}

/// The API key, from the `key` query parameter or (as some clients send it) a `key` header.
fn key_ok(sim: &Simulator, params: &Params, headers: &HeaderMap) -> bool {
    let expected = sim.inner.opts.api_key.as_str();
    params.get("key") == Some(expected) || headers.get("key").and_then(|v| v.to_str().ok()) == Some(expected)
}

fn bearer_ok(sim: &Simulator, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return false;
    };
    let now = sim.now_secs();
    sim.tokens().access_valid(token, now)
}

/// `/systems/{sid}/devices/micros/…/telemetry` and `/systems/{sid}/devices/encharges/…/telemetry`.
fn is_device_level(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(segments.as_slice(), ["api", "v4", "systems", _, "devices", "micros" | "encharges", .., "telemetry"])
}

async fn fault_response(sim: &Simulator, kind: FaultKind) -> Response {
    match kind {
        FaultKind::Internal => errors::internal().into_response(),
        FaultKind::InternalAlt => errors::internal_alt().into_response(),
        FaultKind::Unavailable => errors::unavailable().into_response(),
        FaultKind::Html => errors::overload_page().into_response(),
        FaultKind::Hang => {
            tokio::select! {
                _ = sim.inner.stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(HANG_SECS)) => {}
            }
            errors::unavailable().into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_level_paths() {
        assert!(is_device_level("/api/v4/systems/4210001/devices/micros/telemetry"));
        assert!(is_device_level("/api/v4/systems/4210001/devices/micros/482241031052/telemetry"));
        assert!(is_device_level("/api/v4/systems/4210003/devices/encharges/482415000002/telemetry"));
        assert!(!is_device_level("/api/v4/systems/4210001/devices"));
        assert!(!is_device_level("/api/v4/systems/4210001/telemetry/production_micro"));
    }

    #[test]
    fn hit_log_keeps_order_and_statuses() {
        let mut log = HitLog::default();
        let a = log.begin(1, 10, "GET", "/api/v4/systems");
        let b = log.begin(2, 20, "POST", "/oauth/token");
        log.finish(b, 200, Some("refresh_token".into()));
        log.finish(a, 401, None);
        let json = log.to_json();
        assert_eq!(json[0]["status"], 401);
        assert_eq!(json[1]["grant"], "refresh_token");
        assert!(json[0].get("grant").is_none());
        log.clear();
        log.finish(a, 200, None);
        assert_eq!(log.len(), 0);
    }
}
