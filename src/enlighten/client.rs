//! `EnlightenClient`: one reqwest client for every call to the Enphase host, the hit ledger in
//! front of it, `key=` and the Bearer token on every API call, and the 401 rule (refresh once,
//! retry once; a second 401 means the plan or scope denies that endpoint).

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use url::Url;

use crate::clock::SharedClock;
use crate::config::EnphaseConfig;
use crate::enlighten::error::{self, ApiError};
use crate::enlighten::ledger::Ledger;
use crate::enlighten::oauth::{self, OAuthClient};
use crate::enlighten::tokens::{TokenManager, TokenStore};
use crate::secret::Secret;

/// The User-Agent sent with every request.
pub const USER_AGENT: &str = concat!("enphase-mqtt/", env!("CARGO_PKG_VERSION"));

/// A raw answer: status, Content-Type and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status code.
    pub status: u16,
    /// The Content-Type header, if any.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

/// The HTTP client and the ledger that every request to the Enphase host goes through, token
/// calls included.
#[derive(Debug, Clone)]
pub struct Transport {
    http: reqwest::Client,
    ledger: Arc<Ledger>,
    /// The whole request's timeout: how long a hit may be on its way.
    request_timeout: Duration,
}

/// Bodies larger than this are cut off (a real answer is a few hundred KiB at most).
const MAX_BODY: usize = 16 * 1024 * 1024;

impl Transport {
    /// Builds the one reqwest client (rustls, timeouts, User-Agent).
    pub fn new(ledger: Arc<Ledger>, request_timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(Duration::from_secs(10).min(request_timeout))
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ApiError::from_reqwest)?;
        Ok(Self { http, ledger, request_timeout })
    }

    /// The underlying client, to build requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Counts the hit (or refuses it), sends, and reads the whole answer. A 429 blocks the ledger
    /// until Enphase's `period_end`.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Answer, ApiError> {
        // Held until the answer is read (or the call fails or is dropped): the hit counts in the
        // per-minute window from then.
        let _hit = self.ledger.reserve(self.request_timeout)?;
        let response = request.send().await.map_err(ApiError::from_reqwest)?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(ApiError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ApiError::Decode { endpoint: String::new(), message: "answer larger than 16 MiB".into() });
            }
            body.extend_from_slice(&chunk);
        }
        if status == 429 || status == 409 {
            let err = ApiError::from_response(status, content_type.as_deref(), &body);
            if let ApiError::RateLimited { period, period_end, .. } = err {
                self.ledger.note_rate_limited(period, period_end);
            }
        }
        Ok(Answer { status, content_type, body })
    }
}

/// The typed Enlighten API v4 client (endpoint methods are in `api.rs`).
#[derive(Debug)]
pub struct EnlightenClient {
    transport: Transport,
    api_base: Url,
    api_key: Secret,
    tokens: Arc<TokenManager>,
    /// Endpoints (path templates) that answered 401 to a fresh token: the plan or scope denies them.
    denied: Mutex<HashSet<&'static str>>,
}

impl EnlightenClient {
    /// Builds the whole Enphase side from the config: ledger, transport, OAuth client and tokens.
    pub fn from_config(config: &EnphaseConfig, state_dir: &Path, clock: SharedClock) -> anyhow::Result<Self> {
        let ledger = Arc::new(Ledger::open(state_dir, config.minute_limit(), config.month_limit(), clock.clone())?);
        let transport = Transport::new(ledger, Duration::from_secs(config.request_timeout_secs))?;
        let oauth = OAuthClient::new(transport.clone(), &config.base_url, &config.client_id, &config.client_secret);
        let store = TokenStore::new(state_dir);
        let tokens = Arc::new(TokenManager::new(store, oauth, clock, config.auth.clone()));
        Ok(Self::new(transport, &config.base_url, config.api_key.clone(), tokens))
    }

    /// A client over existing parts.
    pub fn new(transport: Transport, base_url: &Url, api_key: Secret, tokens: Arc<TokenManager>) -> Self {
        let api_base = oauth::endpoint(base_url, "/api/v4");
        Self { transport, api_base, api_key, tokens, denied: Mutex::new(HashSet::new()) }
    }

    /// The token manager.
    pub fn tokens(&self) -> &Arc<TokenManager> {
        &self.tokens
    }

    /// The hit ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        self.transport.ledger()
    }

    /// Endpoints found to be outside the plan or scope (a second 401 with a fresh token).
    pub fn denied_endpoints(&self) -> Vec<&'static str> {
        let mut list: Vec<_> = self.denied.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
        list.sort_unstable();
        list
    }

    /// GET `{base}/api/v4{path}` with `key` and the Bearer token, parsed as `T`. On a 401 the token
    /// is refreshed once and the call retried once; a second 401 marks `endpoint` as denied by the
    /// plan and it is not called again.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: String,
        query: Vec<(&'static str, String)>,
    ) -> Result<T, ApiError> {
        if self.denied.lock().unwrap_or_else(|e| e.into_inner()).contains(endpoint) {
            return Err(ApiError::NotPermitted { endpoint: endpoint.to_string() });
        }
        let token = self.tokens.access_token().await?;
        match self.get_once(endpoint, &path, &query, &token).await {
            Err(ApiError::Unauthorized { .. }) => {
                let fresh = self.tokens.refresh_after_rejection(&token).await?;
                match self.get_once(endpoint, &path, &query, &fresh).await {
                    Err(ApiError::Unauthorized { details }) => {
                        self.denied.lock().unwrap_or_else(|e| e.into_inner()).insert(endpoint);
                        tracing::warn!(
                            endpoint,
                            details,
                            "Enphase refuses this endpoint to a fresh token: the plan or the app's access controls do not include it; it will not be called again"
                        );
                        Err(ApiError::NotPermitted { endpoint: endpoint.to_string() })
                    }
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        path: &str,
        query: &[(&'static str, String)],
        token: &Secret,
    ) -> Result<T, ApiError> {
        let mut url = self.api_base.clone();
        url.set_path(&format!("{}{}", self.api_base.path().trim_end_matches('/'), path));
        let request = self
            .transport
            .http()
            .get(url)
            .query(&[("key", self.api_key.expose())])
            .query(query)
            .bearer_auth(token.expose());
        let answer = self.transport.send(request).await?;
        tracing::debug!(endpoint, status = answer.status, bytes = answer.body.len(), "Enlighten answered");
        if (200..300).contains(&answer.status) {
            error::parse_body(endpoint, answer.content_type.as_deref(), &answer.body)
        } else {
            Err(ApiError::from_response(answer.status, answer.content_type.as_deref(), &answer.body))
        }
    }
}
