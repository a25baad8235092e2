//! Enlighten's error envelopes (reference §5.1), built as responses.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer on its way up through `?`; boxed because a `Response` is large.
#[derive(Debug)]
pub(crate) struct Rejection(Box<Response>);

impl From<Response> for Rejection {
    fn from(response: Response) -> Self {
        Rejection(Box::new(response))
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        *self.0
    }
}

/// Longest piece of client input echoed back in an error message.
const MAX_ECHO: usize = 40;

/// The object envelope `{"message", "details", "code"}` used by most errors.
pub(crate) fn object(status: StatusCode, message: &str, details: impl Into<String>) -> Rejection {
    let body = json!({ "message": message, "details": details.into(), "code": status.as_u16() });
    (status, axum::Json(body)).into_response().into()
}

/// 401 as in `error_401.json`: bad key, bad token, or an endpoint outside the plan.
pub(crate) fn not_authorized() -> Rejection {
    object(StatusCode::UNAUTHORIZED, "Not Authorized", "User is not authorized")
}

/// 404 for an unknown (or non-numeric) system id, echoing the id like Enlighten does.
pub(crate) fn system_not_found(raw_id: &str) -> Rejection {
    object(StatusCode::NOT_FOUND, "Not Found", format!("System not found for {{:id=>\"{}\"}}", echo(raw_id)))
}

/// 404 for an unknown device of a known system (`kind` is `Micro`, `Encharge`, `Envoy`…).
pub(crate) fn device_not_found(kind: &str, raw_id: &str) -> Rejection {
    object(StatusCode::NOT_FOUND, "Not Found", format!("{kind} not found for {{:id=>\"{}\"}}", echo(raw_id)))
}

/// 422 in the form the spec examples use: `Invalid request because of '<reason>'`.
pub(crate) fn unprocessable(reason: impl std::fmt::Display) -> Rejection {
    object(StatusCode::UNPROCESSABLE_ENTITY, "Unprocessable Entity", format!("Invalid request because of '{reason}'"))
}

/// 422 for a telemetry window the system cannot serve, with the interval bounds in `details`.
pub(crate) fn invalid_range(start: i64, end: i64, first: i64, last: i64) -> Rejection {
    unprocessable(format!(
        "Requested date range is invalid for this system. {{:start_at=>{start}, :end_at=>{end}, :first_interval=>{first}, :last_interval=>{last}}}"
    ))
}

/// The array envelope of 405 (`error_405.json`), used for any known path with a wrong method.
pub(crate) async fn method_not_allowed() -> Response {
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(json!({ "reason": "405", "message": ["Method not allowed"] })))
        .into_response()
}

/// 404 for paths nobody serves.
pub(crate) async fn fallback() -> Response {
    resource_not_found().into_response()
}

/// The body of [`fallback`], for use outside handlers.
pub(crate) fn resource_not_found() -> Rejection {
    object(StatusCode::NOT_FOUND, "Not Found", "Requested resource not found")
}

/// 500 as in `error_500.json`.
pub(crate) fn internal() -> Rejection {
    object(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", "unable to fetch data")
}

/// The alternate 500 envelope of `error_500_alt.json`.
pub(crate) fn internal_alt() -> Rejection {
    let body = json!({ "errorCode": 7, "errorMessages": ["Data is temporarily unavailable"] });
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response().into()
}

/// 503 with a small JSON body (the real body is unknown).
pub(crate) fn unavailable() -> Rejection {
    object(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", "Service temporarily unavailable")
}

/// The HTML page the edge served during the 2023 overload, with status 503.
pub(crate) fn overload_page() -> Rejection {
    let page = "<!DOCTYPE html>\n<html><head><title>Enphase Energy</title></head>\n<body><h1>Please try again later</h1>\n<p>This website is under heavy load (queue full)</p>\n<p>We're sorry, too many people are accessing this website at the same time. We're working on this problem. Please try again later.</p>\n</body></html>\n";
    (StatusCode::SERVICE_UNAVAILABLE, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response().into()
}

/// Client input shortened (and stripped of control characters) for echoing in messages.
pub(crate) fn echo(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(MAX_ECHO).collect()
}
