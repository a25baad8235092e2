//! The one-shot web listener behind `auth login`: receives Enphase's redirect, checks `state`,
//! shows a short page, and hands back the authorization code.

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What the redirect brought: the code, or why there is none.
pub type Outcome = Result<String, String>;

#[derive(Clone)]
struct Shared {
    state: String,
    tx: mpsc::Sender<Outcome>,
}

/// Serves `/callback` on `listener` until one redirect with the right `state` (or a refusal)
/// arrives, or `timeout` passes. Requests with a wrong or missing `state` are answered with an
/// error page and end the wait as a refusal: someone else's redirect must never be exchanged.
pub async fn wait_for_redirect(listener: TcpListener, state: String, timeout: Duration) -> anyhow::Result<Outcome> {
    let (tx, mut rx) = mpsc::channel::<Outcome>(1);
    let app =
        Router::new().route("/callback", get(callback)).route("/", get(callback)).with_state(Shared { state, tx });
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app).with_graceful_shutdown(async move { stopper.cancelled().await }).await
    });
    let outcome = tokio::time::timeout(timeout, rx.recv()).await;
    // Let the browser receive the page before the listener goes away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    match outcome {
        Ok(Some(outcome)) => Ok(outcome),
        Ok(None) => anyhow::bail!("the redirect listener stopped unexpectedly"),
        Err(_) => Ok(Err(format!("no answer from the browser within {} s", timeout.as_secs()))),
    }
}

async fn callback(
    State(shared): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
) -> (StatusCode, Html<String>) {
    let (status, title, text, outcome) = match (q.get("state"), q.get("error"), q.get("code")) {
        (got, _, _) if got != Some(&shared.state) => (
            StatusCode::BAD_REQUEST,
            "Wrong state",
            "This answer does not belong to the login that is waiting (its state parameter does not match). Nothing was stored.",
            Err("the redirect's state parameter does not match: refused".to_string()),
        ),
        (_, Some(error), _) => (
            StatusCode::OK,
            "Not authorized",
            "Access was not granted, so enphase-mqtt cannot read your system. You can close this tab.",
            Err(format!("the homeowner did not approve the app (error={})", short(error))),
        ),
        (_, None, Some(code)) if !code.is_empty() => {
            (StatusCode::OK, "Done", "enphase-mqtt is authorized. You can close this tab.", Ok(code.clone()))
        }
        _ => (
            StatusCode::BAD_REQUEST,
            "No code",
            "The address has neither a code nor an error. Nothing was stored.",
            Err("the redirect carried no authorization code".to_string()),
        ),
    };
    let _ = shared.tx.try_send(outcome);
    let page = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>enphase-mqtt: {title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{title}</h1><p>{text}</p></body></html>"
    );
    (status, Html(page))
}

/// An OAuth error word from the query, cut short and limited to safe characters.
fn short(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect()
}
