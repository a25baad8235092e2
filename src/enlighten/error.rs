//! The typed error of every Enlighten call: reads Enphase's error envelopes (§5 of the API notes),
//! non-JSON pages and transport failures into one [`ApiError`] that callers can branch on.
//!
//! No variant ever holds a URL, a query string or a header: the API key travels in the query and
//! the bearer token in a header. Enphase's `details` texts carry no secrets and are kept (one line,
//! bounded length) because they are what a user needs to see.

use std::fmt;

use chrono::{DateTime, SecondsFormat};
use serde_json::Value;

use super::lenient;

/// Longest `details`/`message` text kept from an error body, in characters.
const MAX_TEXT: usize = 300;

/// What went wrong with one Enlighten request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// 401: the access token expired or is invalid, or the plan does not include this endpoint,
    /// or the API key is wrong. The client refreshes once and decides.
    Unauthorized {
        /// Enphase's `details` (e.g. "User is not authorized").
        details: String,
    },
    /// A second 401 after a fresh token: this endpoint is outside the app's plan or access controls.
    /// Built by the client, never by [`ApiError::from_response`].
    NotPermitted {
        /// The endpoint template, e.g. `/systems/{id}/devices/micros/telemetry`.
        endpoint: String,
    },
    /// 403: the token is valid but this system is not authorized for this app or user.
    Forbidden {
        /// Enphase's `details`.
        details: String,
    },
    /// 404: no such system or device (some 404s say "Not Authorized").
    NotFound {
        /// Enphase's `details`.
        details: String,
    },
    /// 400 or 422: the parameters were refused; retrying unchanged will not help.
    InvalidRequest {
        /// 400 or 422.
        status: u16,
        /// Enphase's `details`.
        details: String,
        /// First interval the system has, when a date range was out of bounds (epoch seconds).
        first_interval: Option<i64>,
        /// Last interval the system has, when a date range was out of bounds (epoch seconds).
        last_interval: Option<i64>,
    },
    /// 429 (and v2's 409): the plan's quota for the period is spent.
    RateLimited {
        /// Which quota: per minute or per month (inferred from the window when not sent).
        period: Option<RatePeriod>,
        /// Start of the quota window, epoch seconds.
        period_start: Option<i64>,
        /// End of the quota window, epoch seconds: wait until then.
        period_end: Option<i64>,
        /// Hits allowed in the period.
        limit: Option<i64>,
    },
    /// 500, 502, 504, 405/501 (array envelope) and other unexpected statuses.
    Server {
        /// The HTTP status.
        status: u16,
        /// The best message found in the body, or empty.
        message: String,
    },
    /// 503 with a JSON or empty body.
    Unavailable {
        /// The HTTP status (503).
        status: u16,
    },
    /// A body that is not JSON where JSON was expected, such as the edge's HTML "heavy load"
    /// page, even on a 200.
    NotJson {
        /// The HTTP status.
        status: u16,
        /// The media type of the `Content-Type` header without parameters, or empty when absent.
        content_type: String,
    },
    /// Valid JSON whose top-level shape the endpoint's type cannot read.
    Decode {
        /// The endpoint template.
        endpoint: String,
        /// serde's description of the problem.
        message: String,
    },
    /// The connection failed (refused, reset, TLS, DNS …). Never contains the URL.
    Transport {
        /// The error chain, with anything that looks like a secret query value masked.
        message: String,
    },
    /// Our own files (the token store, the hit ledger) could not be read or written: nothing
    /// went to Enphase. The message names the file.
    Storage {
        /// What failed, with the file's path.
        message: String,
    },
    /// No answer in time.
    Timeout,
    /// Our own hit ledger refused to send the request.
    BudgetExhausted {
        /// The budget that is spent.
        period: RatePeriod,
        /// When it frees up again, milliseconds since the epoch.
        until_ms: i64,
    },
    /// Tokens are missing or the refresh was refused: the homeowner must authorize the app again.
    AuthorizationNeeded {
        /// Why, in words for the user.
        reason: String,
    },
}

/// The two quota windows of an Enlighten plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RatePeriod {
    /// Hits per minute (Watt: 10).
    Minute,
    /// Hits per UTC calendar month (Watt: 1,000).
    Month,
}

impl RatePeriod {
    /// `"minute"` or `"month"`, as Enphase spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RatePeriod::Minute => "minute",
            RatePeriod::Month => "month",
        }
    }

    /// Reads Enphase's `period` text (`"minute"`, `"month"`, any case).
    fn parse(text: &str) -> Option<Self> {
        let t = text.trim().to_ascii_lowercase();
        if t.starts_with("min") {
            Some(RatePeriod::Minute)
        } else if t.starts_with("mon") {
            Some(RatePeriod::Month)
        } else {
            None
        }
    }

    /// Guesses the period from the window length when `period` is missing.
    fn from_window(start: Option<i64>, end: Option<i64>) -> Option<Self> {
        let len = end?.checked_sub(start?)?;
        match len {
            1..=3_600 => Some(RatePeriod::Minute),
            l if l >= 27 * 86_400 => Some(RatePeriod::Month),
            _ => None,
        }
    }
}

impl fmt::Display for RatePeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::Unauthorized { details } => {
                write!(f, "Enphase refused the request as unauthorized (401){}", suffix(details))
            }
            ApiError::NotPermitted { endpoint } => write!(
                f,
                "Enphase refuses {endpoint} even with a fresh access token (401): \
                 the app's plan or access controls do not include it"
            ),
            ApiError::Forbidden { details } => {
                write!(f, "Enphase denied access to this system (403){}", suffix(details))
            }
            ApiError::NotFound { details } => {
                write!(f, "Enphase found no such resource (404){}", suffix(details))
            }
            ApiError::InvalidRequest { status, details, .. } => {
                write!(f, "Enphase rejected the request parameters ({status}){}", suffix(details))
            }
            ApiError::RateLimited { period, period_end, limit, .. } => {
                f.write_str("Enphase rate limit reached")?;
                let mut parts = Vec::new();
                if let Some(p) = period {
                    parts.push(p.as_str().to_owned());
                }
                if let Some(l) = limit {
                    parts.push(format!("{l} hits"));
                }
                if !parts.is_empty() {
                    write!(f, " ({})", parts.join(", "))?;
                }
                if let Some(end) = period_end {
                    write!(f, " until {}", iso_secs(*end))?;
                }
                Ok(())
            }
            ApiError::Server { status, message } => {
                write!(f, "Enphase server error ({status}){}", suffix(message))
            }
            ApiError::Unavailable { status } => write!(f, "Enphase service unavailable ({status})"),
            ApiError::NotJson { status, content_type } => {
                let what = if content_type.is_empty() {
                    "a body that is not JSON".to_owned()
                } else {
                    format!("{content_type} instead of JSON")
                };
                write!(f, "Enphase answered {status} with {what} (overloaded or an error page)")
            }
            ApiError::Decode { endpoint, message } => {
                write!(f, "could not read Enphase's answer from {endpoint}: {message}")
            }
            ApiError::Transport { message } => write!(f, "could not reach Enphase: {message}"),
            ApiError::Storage { message } => f.write_str(message),
            ApiError::Timeout => f.write_str("Enphase did not answer in time"),
            ApiError::BudgetExhausted { period, until_ms } => {
                write!(f, "our {period} budget of Enphase hits is spent until {}", iso_millis(*until_ms))
            }
            ApiError::AuthorizationNeeded { reason } => {
                write!(f, "the homeowner must authorize the app again: {reason}")
            }
        }
    }
}

/// `": details"`, or nothing when `details` is empty.
fn suffix(details: &str) -> String {
    if details.is_empty() { String::new() } else { format!(": {details}") }
}

fn iso_secs(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("epoch {secs}"))
}

fn iso_millis(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| format!("epoch {ms} ms"))
}

impl ApiError {
    /// Reads a non-2xx answer (status, Content-Type header, body bytes) into the matching variant.
    ///
    /// The status decides the variant; the body adds Enphase's `details`, the rate-limit window and
    /// the first/last interval of a 422. For 401/403/404/400/422/429/409 a non-JSON body still gives
    /// the status's variant (with empty details); for other statuses a non-empty body that is not
    /// JSON gives [`ApiError::NotJson`], except that a 503 with an empty body is
    /// [`ApiError::Unavailable`].
    pub fn from_response(status: u16, content_type: Option<&str>, body: &[u8]) -> ApiError {
        let blank = body.iter().all(u8::is_ascii_whitespace);
        let json = if blank { None } else { serde_json::from_slice::<Value>(body).ok() };
        let envelope = json.as_ref().map(Envelope::read).unwrap_or_default();
        let details = envelope.details.clone().unwrap_or_default();

        match status {
            401 => ApiError::Unauthorized { details },
            403 => ApiError::Forbidden { details },
            404 => ApiError::NotFound { details },
            400 | 422 => {
                let first_interval =
                    envelope.number("first_interval").or_else(|| ruby_hash_int(&details, "first_interval"));
                let last_interval =
                    envelope.number("last_interval").or_else(|| ruby_hash_int(&details, "last_interval"));
                ApiError::InvalidRequest { status, details, first_interval, last_interval }
            }
            429 | 409 => {
                let period_start = envelope.number("period_start");
                let period_end = envelope.number("period_end");
                let period = envelope
                    .text("period")
                    .and_then(|p| RatePeriod::parse(&p))
                    .or_else(|| RatePeriod::from_window(period_start, period_end));
                ApiError::RateLimited { period, period_start, period_end, limit: envelope.number("limit") }
            }
            _ if json.is_none() && !blank => ApiError::NotJson { status, content_type: media_type(content_type) },
            503 => ApiError::Unavailable { status },
            _ => ApiError::Server { status, message: envelope.message.unwrap_or_default() },
        }
    }

    /// From a reqwest error, WITHOUT the URL ([`reqwest::Error::without_url`]) because the query
    /// carries the API key. Timeouts become [`ApiError::Timeout`]; everything else
    /// [`ApiError::Transport`] with the error chain, secrets masked once more for safety.
    pub fn from_reqwest(err: reqwest::Error) -> ApiError {
        let err = err.without_url();
        if err.is_timeout() {
            return ApiError::Timeout;
        }
        if let Some(status) = err.status() {
            return ApiError::from_response(status.as_u16(), None, b"");
        }
        let mut parts: Vec<String> = vec![err.to_string()];
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if parts.last() != Some(&text) {
                parts.push(text);
            }
            source = cause.source();
        }
        ApiError::Transport { message: one_line(&redact_secrets(&parts.join(": "))) }
    }

    /// Whether trying again later may succeed without changing anything: server errors, 503,
    /// non-JSON pages, transport failures and timeouts.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::Server { .. }
                | ApiError::Unavailable { .. }
                | ApiError::NotJson { .. }
                | ApiError::Transport { .. }
                | ApiError::Storage { .. }
                | ApiError::Timeout
        )
    }

    /// A short snake_case label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::NotPermitted { .. } => "not_permitted",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::NotFound { .. } => "not_found",
            ApiError::InvalidRequest { .. } => "invalid_request",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Server { .. } => "server",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::NotJson { .. } => "not_json",
            ApiError::Decode { .. } => "decode",
            ApiError::Transport { .. } => "transport",
            ApiError::Storage { .. } => "storage",
            ApiError::Timeout => "timeout",
            ApiError::BudgetExhausted { .. } => "budget_exhausted",
            ApiError::AuthorizationNeeded { .. } => "authorization_needed",
        }
    }
}

/// Parses a 2xx body as JSON into `T`. A body that is not JSON at all (empty, HTML, cut off) is
/// [`ApiError::NotJson`] with status 200, whatever the Content-Type claimed; valid JSON of the
/// wrong shape is [`ApiError::Decode`]. A JSON body is accepted even under a wrong Content-Type.
pub fn parse_body<T: serde::de::DeserializeOwned>(
    endpoint: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => {
            // serde quotes the value it could not read, which may be a token.
            let message = crate::secret::hide_quoted_values(&err.to_string());
            ApiError::Decode { endpoint: endpoint.to_owned(), message: one_line(&message) }
        }
        _ => ApiError::NotJson { status: 200, content_type: media_type(content_type) },
    })
}

/// The parts of Enphase's error envelopes we use (§5.1): the object envelope
/// `{message, details, code, period…}`, the array envelope `{reason, message: […]}`, the alternate
/// 500 `{errorCode, errorMessages: […]}`, live_data's `{error: {message, details}}` and OAuth's
/// `{error, error_description}`.
#[derive(Debug, Default)]
struct Envelope {
    /// The most specific human text: `details`, else the message.
    details: Option<String>,
    /// The summary text: `details` when present, else `message`, `errorMessages`, `error`, `reason`.
    message: Option<String>,
    object: serde_json::Map<String, Value>,
}

impl Envelope {
    fn read(value: &Value) -> Self {
        let object = match value {
            Value::Object(map) => map.clone(),
            Value::String(s) => {
                let text = Some(one_line(s)).filter(|t| !t.is_empty());
                return Envelope { details: text.clone(), message: text, object: Default::default() };
            }
            _ => Default::default(),
        };
        let field = |key: &str| object.get(key).and_then(text_of);
        let nested_error = object.get("error").and_then(|e| match e {
            Value::Object(inner) => inner.get("message").and_then(text_of),
            other => text_of(other),
        });
        let message = field("message")
            .or_else(|| field("errorMessages"))
            .or_else(|| field("error_description"))
            .or(nested_error)
            .or_else(|| field("reason"));
        let details = field("details").filter(|d| !d.is_empty());
        Envelope { details: details.clone().or_else(|| message.clone()), message: details.or(message), object }
    }

    fn number(&self, key: &str) -> Option<i64> {
        self.object.get(key).and_then(lenient::i64_from_value)
    }

    fn text(&self, key: &str) -> Option<String> {
        self.object.get(key).and_then(lenient::string_from_value)
    }
}

/// A string, a number, or a list of strings joined with "; ", as one bounded line.
fn text_of(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => return None,
    };
    let text = one_line(&text);
    (!text.is_empty()).then_some(text)
}

/// Reads `:key=>123` (Ruby hash syntax inside Enphase's 422 details) or `key: 123` / `"key":123`.
fn ruby_hash_int(details: &str, key: &str) -> Option<i64> {
    let mut rest = details;
    while let Some(at) = rest.find(key) {
        let after = &rest[at + key.len()..];
        let value = after.trim_start_matches(['=', '>', ':', '"', '\'', ' ']);
        let end = value
            .char_indices()
            .find(|(i, c)| !(c.is_ascii_digit() || (*i == 0 && *c == '-')))
            .map_or(value.len(), |(i, _)| i);
        if let Ok(n) = value[..end].parse::<i64>() {
            return Some(n);
        }
        rest = after;
    }
    None
}

/// `text/html; charset=utf-8` → `text/html`; absent → empty.
fn media_type(content_type: Option<&str>) -> String {
    let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
    one_line(media).chars().take(80).collect()
}

/// Collapses white space and control characters to single spaces, masks anything that looks
/// like a token (an error text may echo one) and bounds the length.
pub(crate) fn one_line(text: &str) -> String {
    let collapsed = crate::secret::mask_tokens(text)
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if collapsed.chars().count() <= MAX_TEXT {
        collapsed
    } else {
        let mut cut: String = collapsed.chars().take(MAX_TEXT).collect();
        cut.push('…');
        cut
    }
}

/// Masks the value of any `name=value` whose name ends in key, token, code, secret or password,
/// in case a lower layer put a URL or form into its message despite `without_url`.
fn redact_secrets(text: &str) -> String {
    const SECRET_NAMES: [&str; 5] = ["key", "token", "code", "secret", "password"];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let (before, after) = rest.split_at(eq);
        out.push_str(before);
        out.push('=');
        let after = &after[1..];
        let name: String = before
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<String>()
            .to_ascii_lowercase();
        if SECRET_NAMES.iter().any(|s| name.ends_with(s)) {
            let end = after
                .find(|c: char| c == '&' || c == '"' || c == '\'' || c == ')' || c.is_whitespace())
                .unwrap_or(after.len());
            if end > 0 {
                out.push_str("***");
            }
            rest = &after[end..];
        } else {
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/enlighten/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn error_401_is_unauthorized_with_details() {
        let err = ApiError::from_response(401, JSON, &fixture("error_401.json"));
        assert!(matches!(&err, ApiError::Unauthorized { details } if details == "User is not authorized"));
        assert_eq!(err.kind(), "unauthorized");
        assert!(!err.is_transient());
        assert_eq!(err.to_string(), "Enphase refused the request as unauthorized (401): User is not authorized");
    }

    #[test]
    fn error_403_is_forbidden() {
        let err = ApiError::from_response(403, JSON, &fixture("error_403.json"));
        assert!(matches!(&err, ApiError::Forbidden { details } if details == "Not authorized to access this resource"));
        assert_eq!(err.kind(), "forbidden");
        assert!(err.to_string().contains("(403): Not authorized to access this resource"));
    }

    #[test]
    fn error_404_is_not_found_even_when_message_says_not_authorized() {
        let err = ApiError::from_response(404, JSON, &fixture("error_404.json"));
        assert!(matches!(&err, ApiError::NotFound { details } if details == "System not found for {:id=>\"4219999\"}"));
        let quirk = ApiError::from_response(404, JSON, br#"{"message":"Not Authorized","code":404}"#);
        assert!(matches!(&quirk, ApiError::NotFound { details } if details == "Not Authorized"));
    }

    #[test]
    fn error_405_array_envelope_is_server() {
        let err = ApiError::from_response(405, JSON, &fixture("error_405.json"));
        assert!(matches!(&err, ApiError::Server { status: 405, message } if message == "Method not allowed"));
        assert!(err.is_transient(), "Server is classed transient; 405 is a programming error logged loudly");
        let not_impl = ApiError::from_response(501, JSON, br#"{"reason":"501","message":["Not Implemented"]}"#);
        assert!(matches!(&not_impl, ApiError::Server { status: 501, message } if message == "Not Implemented"));
    }

    #[test]
    fn error_422_parses_first_and_last_interval() {
        let err = ApiError::from_response(422, JSON, &fixture("error_422.json"));
        let ApiError::InvalidRequest { status, details, first_interval, last_interval } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(*status, 422);
        assert!(details.starts_with("Invalid request because of 'Requested date range is invalid"));
        assert_eq!(*first_interval, Some(1709817300));
        assert_eq!(*last_interval, Some(1750111200));
        assert!(!err.is_transient());
        let plain = ApiError::from_response(
            400,
            JSON,
            br#"{"message":"Bad Request","details":"start_time is required","code":400}"#,
        );
        assert!(matches!(
            plain,
            ApiError::InvalidRequest { status: 400, first_interval: None, last_interval: None, .. }
        ));
    }

    #[test]
    fn error_429_minute_window() {
        let err = ApiError::from_response(429, JSON, &fixture("error_429.json"));
        assert!(matches!(
            err,
            ApiError::RateLimited {
                period: Some(RatePeriod::Minute),
                period_start: Some(1750101420),
                period_end: Some(1750101480),
                limit: Some(10)
            }
        ));
        assert_eq!(err.kind(), "rate_limited");
        assert!(!err.is_transient());
        assert_eq!(err.to_string(), "Enphase rate limit reached (minute, 10 hits) until 2025-06-16T19:18:00Z");
    }

    #[test]
    fn error_429_month_window() {
        let err = ApiError::from_response(429, JSON, &fixture("error_429_month.json"));
        assert!(matches!(
            err,
            ApiError::RateLimited {
                period: Some(RatePeriod::Month),
                period_end: Some(1751328000),
                limit: Some(1000),
                ..
            }
        ));
        assert_eq!(err.to_string(), "Enphase rate limit reached (month, 1000 hits) until 2025-07-01T00:00:00Z");
    }

    #[test]
    fn error_429_without_fields_and_period_inferred_from_window() {
        let bare = ApiError::from_response(
            429,
            JSON,
            br#"{"message":"Too Many Requests","details":"Usage limit exceeded for plan Kilowatt","code":429}"#,
        );
        assert!(matches!(
            bare,
            ApiError::RateLimited { period: None, period_start: None, period_end: None, limit: None }
        ));
        assert_eq!(bare.to_string(), "Enphase rate limit reached");
        let inferred = ApiError::from_response(429, JSON, br#"{"period_start":1623825660,"period_end":"1623825720"}"#);
        assert!(matches!(inferred, ApiError::RateLimited { period: Some(RatePeriod::Minute), .. }));
    }

    #[test]
    fn v2_409_is_rate_limited() {
        let body = br#"{"reason":"409","message":["Usage limit exceeded for plan Watt"],"period":"month","period_start":1640995200,"period_end":1643673600,"limit":10000}"#;
        let err = ApiError::from_response(409, JSON, body);
        assert!(matches!(
            err,
            ApiError::RateLimited {
                period: Some(RatePeriod::Month),
                period_start: Some(1640995200),
                period_end: Some(1643673600),
                limit: Some(10000)
            }
        ));
    }

    #[test]
    fn error_500_both_envelopes() {
        let err = ApiError::from_response(500, JSON, &fixture("error_500.json"));
        assert!(matches!(&err, ApiError::Server { status: 500, message } if message == "unable to fetch data"));
        assert!(err.is_transient());
        assert_eq!(err.to_string(), "Enphase server error (500): unable to fetch data");
        let alt = ApiError::from_response(500, JSON, &fixture("error_500_alt.json"));
        assert!(
            matches!(&alt, ApiError::Server { status: 500, message } if message == "Data is temporarily unavailable")
        );
    }

    #[test]
    fn html_overload_page_is_not_json() {
        let html = b"<!DOCTYPE html>\n<html><head><title>Enlighten</title></head>\n<body>This website is under heavy load (queue full)</body></html>";
        let err = ApiError::from_response(502, Some("text/html; charset=UTF-8"), html);
        assert!(matches!(&err, ApiError::NotJson { status: 502, content_type } if content_type == "text/html"));
        assert!(err.is_transient());
        assert_eq!(err.kind(), "not_json");
        assert_eq!(
            err.to_string(),
            "Enphase answered 502 with text/html instead of JSON (overloaded or an error page)"
        );
        let on_503 = ApiError::from_response(503, Some("text/html"), html);
        assert!(matches!(on_503, ApiError::NotJson { status: 503, .. }));
        let on_401 = ApiError::from_response(401, Some("text/html"), html);
        assert!(
            matches!(&on_401, ApiError::Unauthorized { details } if details.is_empty()),
            "the status still decides"
        );
        assert_eq!(on_401.to_string(), "Enphase refused the request as unauthorized (401)");
    }

    #[test]
    fn error_503_empty_or_json_is_unavailable() {
        for body in [&b""[..], b"  \n", br#"{"message":"Service Unavailable"}"#] {
            let err = ApiError::from_response(503, None, body);
            assert!(matches!(err, ApiError::Unavailable { status: 503 }), "{body:?}");
            assert!(err.is_transient());
        }
        let gateway = ApiError::from_response(504, None, b"");
        assert!(matches!(&gateway, ApiError::Server { status: 504, message } if message.is_empty()));
        assert_eq!(gateway.to_string(), "Enphase server error (504)");
    }

    #[test]
    fn details_are_one_bounded_line() {
        let long = format!(r#"{{"details":"line one\nline two {}"}}"#, "x".repeat(1000));
        let ApiError::Forbidden { details } = ApiError::from_response(403, JSON, long.as_bytes()) else { panic!() };
        assert!(details.starts_with("line one line two xxx"));
        assert!(!details.contains('\n'));
        assert_eq!(details.chars().count(), MAX_TEXT + 1);
    }

    #[test]
    fn parse_body_separates_not_json_from_bad_shape() {
        #[derive(Debug, serde::Deserialize)]
        struct Shape {
            #[allow(dead_code)]
            total: i64,
        }
        let ok: Shape = parse_body("/systems", JSON, br#"{"total": 2}"#).unwrap();
        assert_eq!(ok.total, 2);
        let html =
            parse_body::<Shape>("/systems", Some("text/html"), b"<html>heavy load (queue full)</html>").unwrap_err();
        assert!(matches!(&html, ApiError::NotJson { status: 200, content_type } if content_type == "text/html"));
        let empty = parse_body::<Shape>("/systems", JSON, b"").unwrap_err();
        assert!(matches!(empty, ApiError::NotJson { status: 200, .. }));
        let cut = parse_body::<Shape>("/systems", JSON, br#"{"total": 2"#).unwrap_err();
        assert!(matches!(cut, ApiError::NotJson { .. }), "a truncated body is transient");
        let shape = parse_body::<Shape>("/systems", JSON, br#"{"total": "two"}"#).unwrap_err();
        assert!(matches!(&shape, ApiError::Decode { endpoint, .. } if endpoint == "/systems"));
        assert!(!shape.is_transient());
        assert!(shape.to_string().starts_with("could not read Enphase's answer from /systems: "));
        let mislabelled: Shape = parse_body("/systems", Some("text/plain"), br#"{"total": 3}"#).unwrap();
        assert_eq!(mislabelled.total, 3);
    }

    #[test]
    fn own_variants_display_and_classify() {
        let budget = ApiError::BudgetExhausted { period: RatePeriod::Month, until_ms: 1_751_328_000_000 };
        assert_eq!(budget.to_string(), "our month budget of Enphase hits is spent until 2025-07-01T00:00:00Z");
        assert_eq!(budget.kind(), "budget_exhausted");
        assert!(!budget.is_transient());
        let denied = ApiError::NotPermitted { endpoint: "/systems/{id}/devices/micros/telemetry".into() };
        assert!(denied.to_string().contains("/systems/{id}/devices/micros/telemetry"));
        assert_eq!(denied.kind(), "not_permitted");
        assert!(ApiError::Timeout.is_transient());
        assert_eq!(ApiError::Timeout.kind(), "timeout");
        let auth = ApiError::AuthorizationNeeded { reason: "refresh token refused".into() };
        assert_eq!(auth.kind(), "authorization_needed");
        assert!(!auth.is_transient());
        assert_eq!(serde_json::to_string(&RatePeriod::Minute).unwrap(), "\"minute\"");
    }

    #[test]
    fn redact_masks_secret_looking_values() {
        assert_eq!(
            redact_secrets("GET /api/v4/systems?key=abc123&size=10 failed"),
            "GET /api/v4/systems?key=***&size=10 failed"
        );
        assert_eq!(redact_secrets("refresh_token=eyJ.x code=42 a=b"), "refresh_token=*** code=*** a=b");
        assert_eq!(redact_secrets("no secrets here"), "no secrets here");
    }

    #[test]
    fn ruby_hash_ints_are_found() {
        let d = "{:start_at=>1, :end_at=>2, :first_interval=>-5, :last_interval=>1750111200}";
        assert_eq!(ruby_hash_int(d, "first_interval"), Some(-5));
        assert_eq!(ruby_hash_int(d, "last_interval"), Some(1750111200));
        assert_eq!(ruby_hash_int("\"first_interval\": 17", "first_interval"), Some(17));
        assert_eq!(ruby_hash_int("first_interval unknown", "first_interval"), None);
    }

    #[tokio::test]
    async fn refused_connection_is_transport_without_the_key() {
        // Bind then drop a listener, so the port is (almost certainly) closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/api/v4/systems?key=SECRETKEY123&page=1");
        let err = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let api = ApiError::from_reqwest(err);
        assert_eq!(api.kind(), "transport");
        assert!(api.is_transient());
        let text = format!("{api} {api:?}");
        assert!(!text.contains("SECRETKEY123"), "{text}");
        assert!(!text.contains("/api/v4"), "{text}");
    }

    #[tokio::test]
    async fn silent_server_is_timeout() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let (_socket, _) = listener.accept().await.unwrap();
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        });
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_millis(200)).build().unwrap();
        let err = client.get(format!("http://127.0.0.1:{port}/?key=SECRETKEY123")).send().await.unwrap_err();
        let api = ApiError::from_reqwest(err);
        assert!(matches!(api, ApiError::Timeout), "{api:?}");
    }
}
