//! The OAuth 2.0 side of Enlighten: the authorize URL and the three grants on `/oauth/token`
//! (authorization code, password, refresh token). Client id and secret go in a Basic header;
//! parameters go in the query string, as Enphase's quick start shows.

use base64::Engine;
use serde::Deserialize;
use url::Url;

use crate::enlighten::client::Transport;
use crate::enlighten::error::{ApiError, one_line};
use crate::enlighten::lenient;
use crate::secret::Secret;

/// What `/oauth/token` answers (fields Enphase documents; unknown ones are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct TokenResponse {
    /// The bearer token for API calls.
    pub access_token: Secret,
    /// The single-use token for the next refresh.
    pub refresh_token: Secret,
    /// Seconds until the access token expires.
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    pub expires_in: Option<i64>,
    /// Enlighten user id.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub enl_uid: Option<String>,
    /// `system` or `partner`.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub app_type: Option<String>,
}

/// The authorize URL the homeowner opens: `response_type=code`, `client_id`, `redirect_uri`, `state`.
pub fn authorize_url(base_url: &Url, client_id: &str, redirect_uri: &str, state: &str) -> Url {
    let mut url = endpoint(base_url, "/oauth/authorize");
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state);
    url
}

/// `base_url` with `path` appended (keeps a path prefix the base may have).
pub fn endpoint(base_url: &Url, path: &str) -> Url {
    let mut url = base_url.clone();
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    url.set_query(None);
    url
}

/// A fresh random `state` value (128 bits, hex).
pub fn random_state() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Calls `/oauth/token`.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    transport: Transport,
    token_url: Url,
    basic: Secret,
}

impl OAuthClient {
    /// A client for the token endpoint of `base_url`.
    pub fn new(transport: Transport, base_url: &Url, client_id: &str, client_secret: &Secret) -> Self {
        let pair = format!("{client_id}:{}", client_secret.expose());
        let basic = Secret::new(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair)));
        Self { transport, token_url: endpoint(base_url, "/oauth/token"), basic }
    }

    /// Exchanges a single-use authorization code.
    pub async fn exchange_code(&self, code: &str, redirect_uri: &str) -> Result<TokenResponse, ApiError> {
        self.token(
            "authorization_code",
            &[("grant_type", "authorization_code"), ("redirect_uri", redirect_uri), ("code", code)],
        )
        .await
    }

    /// The password grant (partner applications).
    pub async fn password(&self, username: &str, password: &Secret) -> Result<TokenResponse, ApiError> {
        self.token("password", &[("grant_type", "password"), ("username", username), ("password", password.expose())])
            .await
    }

    /// Trades a refresh token for a new access token and a new refresh token.
    pub async fn refresh(&self, refresh_token: &Secret) -> Result<TokenResponse, ApiError> {
        self.token("refresh_token", &[("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose())]).await
    }

    async fn token(&self, grant: &str, params: &[(&str, &str)]) -> Result<TokenResponse, ApiError> {
        let request = self
            .transport
            .http()
            .post(self.token_url.clone())
            .query(params)
            .header(reqwest::header::AUTHORIZATION, self.basic.expose());
        let answer = self.transport.send(request).await?;
        if (200..300).contains(&answer.status) {
            let tokens: TokenResponse =
                crate::enlighten::error::parse_body("/oauth/token", answer.content_type.as_deref(), &answer.body)?;
            if tokens.access_token.is_blank() || tokens.refresh_token.is_blank() {
                return Err(ApiError::Decode {
                    endpoint: "/oauth/token".into(),
                    message: "the answer has no access_token or refresh_token".into(),
                });
            }
            return Ok(tokens);
        }
        if matches!(answer.status, 400 | 401) {
            return Err(ApiError::AuthorizationNeeded { reason: refusal(grant, answer.status, &answer.body) });
        }
        Err(ApiError::from_response(answer.status, answer.content_type.as_deref(), &answer.body))
    }
}

/// One line on why Enphase refused a grant, from an RFC 6749 error body when there is one.
fn refusal(grant: &str, status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct OAuthErrorBody {
        error: Option<String>,
        error_description: Option<String>,
        message: Option<String>,
    }
    let what = match grant {
        "refresh_token" => "the refresh token",
        "authorization_code" => "the authorization code",
        "password" => "the user name and password",
        _ => "the request",
    };
    let detail = serde_json::from_slice::<OAuthErrorBody>(body)
        .ok()
        .map(|b| {
            // Descriptions are not documented: one line, bounded, with a token the server may
            // have echoed masked (see `one_line`).
            let line = |text: Option<String>| one_line(&text.unwrap_or_default());
            let (code, desc) = (line(b.error.or(b.message)), line(b.error_description));
            if desc.is_empty() { code } else { format!("{code}: {desc}") }
        })
        .filter(|d| !d.is_empty())
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    format!("Enphase refused {what} with HTTP {status}{detail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorize_url_carries_the_four_parameters() {
        let base = Url::parse("https://api.enphaseenergy.com").unwrap();
        let url = authorize_url(&base, "abc", "https://api.enphaseenergy.com/oauth/redirect_uri", "s1");
        assert_eq!(
            url.as_str(),
            "https://api.enphaseenergy.com/oauth/authorize?response_type=code&client_id=abc&redirect_uri=https%3A%2F%2Fapi.enphaseenergy.com%2Foauth%2Fredirect_uri&state=s1"
        );
    }

    #[test]
    fn endpoint_keeps_a_base_path() {
        let base = Url::parse("http://127.0.0.1:9/enlighten/").unwrap();
        assert_eq!(endpoint(&base, "/oauth/token").as_str(), "http://127.0.0.1:9/enlighten/oauth/token");
    }

    #[test]
    fn states_are_random_hex() {
        let (a, b) = (random_state(), random_state());
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn refusal_names_the_grant_and_the_oauth_error() {
        let msg =
            refusal("refresh_token", 400, br#"{"error":"invalid_grant","error_description":"Invalid refresh token"}"#);
        assert_eq!(msg, "Enphase refused the refresh token with HTTP 400 (invalid_grant: Invalid refresh token)");
        assert_eq!(refusal("password", 401, b"<html>"), "Enphase refused the user name and password with HTTP 401");
        let echoed = format!(
            r#"{{"error":"invalid_grant","error_description":"Invalid refresh token: {}{}"}}"#,
            "x".repeat(100),
            "REFRESHTOK666secretsecret"
        );
        let msg = refusal("refresh_token", 400, echoed.as_bytes());
        assert!(!msg.contains("REFRESHTOK") && !msg.contains("xxx"), "{msg}");
        assert!(msg.ends_with("(invalid_grant: Invalid refresh token: ***)"), "{msg}");
    }

    #[test]
    fn token_response_reads_the_fixture() {
        let text = include_str!("../../tests/fixtures/enlighten/token_response.json");
        let t: TokenResponse = serde_json::from_str(text).unwrap();
        assert_eq!(t.expires_in, Some(86393));
        assert_eq!(t.enl_uid.as_deref(), Some("3318842"));
        assert_eq!(t.app_type.as_deref(), Some("system"));
        assert!(t.refresh_token.expose().starts_with("eyJ"));
    }
}
