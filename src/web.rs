//! The status and consent web page (`http.listen`): `/` shows each system's last report, the hit
//! budget and the authorization state, with a "Connect to Enphase" button that runs the OAuth code
//! flow back to `auth/callback`; `/healthz` and `/metrics` are for monitors.
//!
//! Server-rendered HTML without JavaScript. Links are relative, and when Home Assistant's ingress
//! proxy sends `X-Ingress-Path` that prefix is used instead, so the page works behind ingress.
//! Tokens and secrets never appear on a page or in a log line.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::clock::SharedClock;
use crate::config::{AuthFlow, Config};
use crate::enlighten::{ApiError, EnlightenClient, oauth};
use crate::model::SiteSnapshot;
use crate::status::{Board, BoardReceiver};

/// How long a "Connect to Enphase" click stays good (its `state` is forgotten after that).
pub const PENDING_LIFE: Duration = Duration::from_secs(600);
/// At most this many consent flows wait at once; the oldest is dropped beyond that.
const MAX_PENDING: usize = 32;
/// How long the page waits for the token manager (busy during a refresh) before showing less.
const TOKENS_WAIT: Duration = Duration::from_secs(2);

/// The page's listening socket. Kept open for the whole run, so that the page stays up while the
/// bridge goes from "waiting for consent" to running.
#[derive(Debug)]
pub struct WebListener {
    socket: std::net::TcpListener,
    addr: SocketAddr,
}

impl WebListener {
    /// Binds `addr` (port 0 picks a free port), with `SO_REUSEADDR` so that a restart does not
    /// wait for old connections. Must be called inside the tokio runtime.
    pub fn bind(addr: SocketAddr) -> anyhow::Result<Self> {
        let bound = (|| {
            let socket =
                if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
            socket.set_reuseaddr(true)?;
            socket.bind(addr)?;
            socket.listen(1024)?.into_std()
        })();
        let socket = bound.with_context(|| format!("cannot listen on {addr}"))?;
        let addr = socket.local_addr().with_context(|| format!("reading the address of {addr}"))?;
        Ok(Self { socket, addr })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A URL to print for people: `http://127.0.0.1:8099/` (`localhost` for an unspecified address).
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => "localhost".to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}/", self.addr.port())
    }

    /// A tokio listener on the same socket (a duplicate descriptor: the socket stays open).
    fn listener(&self) -> std::io::Result<tokio::net::TcpListener> {
        let socket = self.socket.try_clone()?;
        socket.set_nonblocking(true)?;
        tokio::net::TcpListener::from_std(socket)
    }
}

/// One consent flow started by `auth/start` and not yet finished.
#[derive(Debug)]
struct Pending {
    state: String,
    redirect_uri: String,
    created: Instant,
}

/// The consent flows waiting for their callback, each good for [`PENDING_LIFE`].
#[derive(Debug, Default)]
struct PendingList(Vec<Pending>);

impl PendingList {
    /// Remembers a new flow, forgetting expired ones (and the oldest beyond the cap).
    fn remember(&mut self, state: String, redirect_uri: String, now: Instant) {
        self.expire(now);
        if self.0.len() >= MAX_PENDING {
            self.0.remove(0);
        }
        self.0.push(Pending { state, redirect_uri, created: now });
    }

    /// Takes the flow with this `state`, if it is known and not expired: each works once.
    fn take(&mut self, state: &str, now: Instant) -> Option<Pending> {
        self.expire(now);
        let at = self.0.iter().position(|p| p.state == state)?;
        Some(self.0.remove(at))
    }

    fn expire(&mut self, now: Instant) {
        self.0.retain(|p| now.saturating_duration_since(p.created) < PENDING_LIFE);
    }
}

/// What the page needs: the Enphase client (tokens, ledger), the live board and the OAuth settings.
#[derive(Clone)]
pub struct Web {
    inner: Arc<Inner>,
}

struct Inner {
    api: Arc<EnlightenClient>,
    board: Option<BoardReceiver>,
    base_url: Url,
    client_id: String,
    flow: AuthFlow,
    clock: SharedClock,
    pending: Mutex<PendingList>,
    /// Bumped each time the page stored new tokens.
    authorized: watch::Sender<u64>,
}

impl Web {
    /// The page over a running bridge (`board`), or over the Enphase client alone while the bridge
    /// waits for the first consent (`board` is `None`).
    pub fn new(config: &Config, api: Arc<EnlightenClient>, board: Option<BoardReceiver>, clock: SharedClock) -> Self {
        let inner = Inner {
            api,
            board,
            base_url: config.enphase.base_url.clone(),
            client_id: config.enphase.client_id.clone(),
            flow: config.enphase.auth.flow,
            clock,
            pending: Mutex::new(PendingList::default()),
            authorized: watch::channel(0).0,
        };
        Self { inner: Arc::new(inner) }
    }

    /// Every route.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(status_page))
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .route("/auth/start", get(auth_start))
            .route("/auth/callback", get(auth_callback))
            .fallback(not_found)
            .with_state(self.clone())
    }

    /// Changes each time the page stores new tokens.
    pub fn authorized(&self) -> watch::Receiver<u64> {
        self.inner.authorized.subscribe()
    }

    fn board(&self) -> Option<Board> {
        self.inner.board.as_ref().map(|b| b.borrow().clone())
    }

    fn now(&self) -> i64 {
        self.inner.clock.now_secs()
    }

    /// The stored tokens' state; "unknown" while the token manager is busy refreshing.
    async fn authorization(&self) -> Authorization {
        let now = self.now();
        match tokio::time::timeout(TOKENS_WAIT, self.inner.api.tokens().current()).await {
            Err(_) => Authorization::Unknown,
            Ok(Err(ApiError::AuthorizationNeeded { reason })) => Authorization::Needed(reason),
            Ok(Err(err)) => Authorization::Needed(err.to_string()),
            Ok(Ok(None)) => Authorization::Needed("no Enphase tokens are stored yet".into()),
            Ok(Ok(Some(t))) => match t.reauth_reason(now) {
                Some(reason) => Authorization::Needed(reason),
                None => Authorization::Ok { expires_at: t.expires_at, enl_uid: t.enl_uid },
            },
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, PendingList> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves the page on `listener` until `shutdown`.
pub async fn serve(listener: &WebListener, web: Web, shutdown: CancellationToken) {
    let socket = match listener.listener() {
        Ok(socket) => socket,
        Err(err) => {
            tracing::error!(error = %err, "the status page cannot use its socket");
            return;
        }
    };
    let served = axum::serve(socket, web.router()).with_graceful_shutdown(shutdown.cancelled_owned()).await;
    if let Err(err) = served {
        tracing::error!(error = %err, "the status page stopped");
    }
}

/// Before the bridge can start (no usable tokens, authorization-code flow): serves the page, whose
/// button leads the homeowner through the consent, until new tokens are stored (`true`) or
/// SIGTERM/Ctrl-C (`false`).
pub async fn serve_until_authorized(
    listener: &WebListener,
    config: &Config,
    clock: SharedClock,
) -> anyhow::Result<bool> {
    let api = Arc::new(EnlightenClient::from_config(&config.enphase, &config.state_dir, clock.clone())?);
    let web = Web::new(config, api, None, clock);
    let mut authorized = web.authorized();
    let stop = CancellationToken::new();
    let socket = listener.listener().context("http.listen: reusing the page's socket")?;
    let router = web.router();
    let server_stop = stop.clone();
    let server = tokio::spawn(async move {
        let served = axum::serve(socket, router).with_graceful_shutdown(server_stop.cancelled_owned()).await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the status page stopped");
        }
    });
    tracing::warn!(url = %listener.url(), "Enphase authorization needed: open the status page and press \"Connect to Enphase\"");
    // Tokens stored some other way (`auth login` in another shell) count too.
    let stored_elsewhere = async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            if matches!(web.authorization().await, Authorization::Ok { .. }) {
                return;
            }
        }
    };
    let done = tokio::select! {
        changed = authorized.changed() => changed.is_ok(),
        _ = stored_elsewhere => true,
        _ = crate::app::wait_for_signal() => false,
    };
    // Let the "Connected" page reach the browser, then hand the socket to the running bridge.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    if tokio::time::timeout(Duration::from_secs(5), server).await.is_err() {
        tracing::warn!("the status page did not stop within 5 s");
    }
    Ok(done)
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// The tokens' state as the page shows it.
enum Authorization {
    Ok { expires_at: i64, enl_uid: Option<String> },
    Needed(String),
    Unknown,
}

async fn status_page(State(web): State<Web>, headers: HeaderMap) -> Response {
    let root = Root::from_headers(&headers, 0);
    let now = web.now();
    let board = web.board();
    let authorization = web.authorization().await;
    let ledger = web.inner.api.ledger().snapshot();

    let mut body = String::new();
    let status = board.as_ref().and_then(|b| b.status.as_ref());
    let plan = status.map(|s| s.plan.to_string()).unwrap_or_default();
    let _ = write!(
        body,
        "<h1>enphase-mqtt</h1><p class=\"muted\">version {}{}</p>",
        esc(env!("CARGO_PKG_VERSION")),
        if plan.is_empty() { String::new() } else { format!(", {} plan", esc(&plan)) }
    );

    // Authorization.
    body.push_str("<h2>Enphase authorization</h2>");
    match &authorization {
        Authorization::Ok { expires_at, enl_uid } => {
            let _ = write!(
                body,
                "<p id=\"authorization\" data-state=\"ok\">Connected{}. The access token expires {} ({}).</p>",
                enl_uid.as_deref().map(|u| format!(" (Enlighten user {})", esc(u))).unwrap_or_default(),
                esc(&crate::app::iso(*expires_at)),
                esc(&relative(now, *expires_at))
            );
            if let Some(s) = status.filter(|s| !s.authorization_ok) {
                let _ = write!(
                    body,
                    "<p class=\"bad\">The last poll was refused: {}</p>",
                    esc(s.authorization_error.as_deref().unwrap_or("authorization failed"))
                );
            }
        }
        Authorization::Needed(reason) => {
            let _ = write!(
                body,
                "<p id=\"authorization\" data-state=\"needed\" class=\"bad\">Authorization needed: {}</p>",
                esc(reason)
            );
            match web.inner.flow {
                AuthFlow::AuthorizationCode => {
                    let _ = write!(
                        body,
                        "<p><a class=\"button\" id=\"connect\" href=\"{}/auth/start\">Connect to Enphase</a></p>\
                         <p class=\"muted\">You log in to Enlighten and approve this app; Enphase then sends you back here.</p>",
                        esc(&root.0)
                    );
                }
                AuthFlow::Password => body.push_str(
                    "<p>This bridge logs in with the password grant: check <code>enphase.auth.username</code> and \
                     <code>enphase.auth.password</code> in the config, then restart it.</p>",
                ),
            }
        }
        Authorization::Unknown => {
            body.push_str("<p id=\"authorization\" data-state=\"busy\">The tokens are being refreshed right now.</p>")
        }
    }

    // MQTT.
    body.push_str("<h2>MQTT</h2>");
    match &board {
        Some(b) => {
            let _ = write!(
                body,
                "<p id=\"mqtt\" data-connected=\"{}\">{} ({} disconnect{} since start)</p>",
                b.mqtt_connected,
                if b.mqtt_connected { "Connected to the broker" } else { "<span class=\"bad\">Not connected</span>" },
                b.mqtt_disconnects,
                if b.mqtt_disconnects == 1 { "" } else { "s" }
            );
        }
        None => body.push_str("<p id=\"mqtt\" data-connected=\"false\">Not started: waiting for authorization.</p>"),
    }

    // The budget.
    body.push_str("<h2>API budget</h2><table class=\"kv\">");
    let _ = write!(
        body,
        "<tr><th>Hits this month</th><td id=\"hits-month-used\" data-value=\"{}\">{} of {}</td></tr>\
         <tr><th>Left this month</th><td id=\"hits-month-left\" data-value=\"{}\">{}</td></tr>\
         <tr><th>Last minute</th><td id=\"hits-minute-used\" data-value=\"{}\">{} of {}</td></tr>",
        ledger.month_used,
        thousands(ledger.month_used.into()),
        thousands(ledger.month_limit.into()),
        ledger.month_left(),
        thousands(ledger.month_left().into()),
        ledger.minute_used,
        ledger.minute_used,
        ledger.minute_limit,
    );
    let next = status.and_then(|s| s.earliest_next_poll());
    let _ = write!(
        body,
        "<tr><th>Next poll</th><td id=\"next-poll\">{}</td></tr>",
        next.map(|t| {
            let when = if t <= now { "due".to_string() } else { relative(now, t) };
            format!("{} ({})", esc(&crate::app::iso(t)), esc(&when))
        })
        .unwrap_or_else(|| "—".into())
    );
    if let Some(s) = status {
        let _ = write!(body, "<tr><th>Polls since start</th><td id=\"polls\">{}</td></tr>", s.polls);
        if let Some(err) = &s.last_error {
            let _ = write!(body, "<tr><th>Last error</th><td>{}</td></tr>", esc(err));
        }
    }
    body.push_str("</table>");

    // The systems.
    body.push_str("<h2>Systems</h2>");
    let sites: Vec<&SiteSnapshot> = board.as_ref().map(|b| b.sites.values().collect()).unwrap_or_default();
    if sites.is_empty() {
        body.push_str("<p class=\"muted\">No system has been read yet.</p>");
    } else {
        body.push_str(
            "<table class=\"systems\"><tr><th>System</th><th>Last report</th><th>Production</th>\
             <th>Today</th><th>Status</th><th>Available</th></tr>",
        );
        for site in sites {
            site_row(&mut body, site, now);
        }
        body.push_str("</table>");
    }
    let _ = write!(
        body,
        "<p class=\"muted\"><a href=\"{r}/metrics\">metrics</a> · <a href=\"{r}/healthz\">health</a></p>",
        r = esc(&root.0)
    );
    html(StatusCode::OK, "enphase-mqtt", &body, true)
}

fn site_row(body: &mut String, site: &SiteSnapshot, now: i64) {
    let report = match site.last_report_at {
        Some(t) => format!(
            "<span data-epoch=\"{t}\">{}</span><br><span class=\"muted\">{}</span>",
            esc(&crate::app::iso(t)),
            esc(&relative(now, t))
        ),
        None => "—".into(),
    };
    let power = match site.production.power_w {
        Some(w) => format!("<td class=\"power\" data-w=\"{w}\">{} W</td>", thousands(w)),
        None => "<td class=\"power\">—</td>".into(),
    };
    let today = match site.production.energy_today_wh {
        Some(wh) => format!("<td class=\"today\" data-wh=\"{wh}\">{:.2} kWh</td>", wh as f64 / 1000.0),
        None => "<td class=\"today\">—</td>".into(),
    };
    let status = match (site.status.as_deref(), site.problem()) {
        (Some(s), Some(true)) => format!("<span class=\"bad\">{} (problem)</span>", esc(s)),
        (Some(s), _) => esc(s),
        (None, _) => "—".into(),
    };
    let _ = write!(
        body,
        "<tr class=\"system\" data-system-id=\"{id}\"><td><strong>{name}</strong><br><span class=\"muted\">{id}</span></td>\
         <td>{report}</td>{power}{today}<td class=\"status\">{status}</td><td class=\"available\">{available}</td></tr>",
        id = site.system_id,
        name = esc(&site.display_name()),
        available = if site.available { "yes" } else { "<span class=\"bad\">no</span>" },
    );
}

async fn healthz(State(web): State<Web>) -> Response {
    let reason = match web.board() {
        Some(board) => board.unhealthy(),
        None => Some("Enphase authorization needed: the bridge waits for the consent on the status page".into()),
    };
    let (status, text) = match reason {
        None => (StatusCode::OK, "ok\n".to_string()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("unhealthy: {}\n", one_line(&reason))),
    };
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], text)
        .into_response()
}

async fn metrics(State(web): State<Web>) -> Response {
    let board = web.board().unwrap_or_default();
    let ledger = web.inner.api.ledger().snapshot();
    let status = board.status.as_ref();
    let authorization = web.authorization().await;
    let token_expiry = match &authorization {
        Authorization::Ok { expires_at, .. } => Some(*expires_at),
        _ => status.and_then(|s| s.token_expires_at),
    };
    let authorization_ok =
        matches!(authorization, Authorization::Ok { .. }) && status.is_none_or(|s| s.authorization_ok);

    let mut m = Metrics::default();
    m.one("enphase_mqtt_hits_month_used", "gauge", "Enphase API hits counted this UTC month.", ledger.month_used);
    m.one("enphase_mqtt_hits_month_limit", "gauge", "Enphase API hits allowed this UTC month.", ledger.month_limit);
    m.one("enphase_mqtt_hits_month_left", "gauge", "Enphase API hits left this UTC month.", ledger.month_left());
    m.one("enphase_mqtt_hits_minute_used", "gauge", "Enphase API hits in the last 60 seconds.", ledger.minute_used);
    m.one("enphase_mqtt_hits_minute_limit", "gauge", "Enphase API hits allowed per 60 seconds.", ledger.minute_limit);
    m.one("enphase_mqtt_polls_total", "counter", "Poll cycles run since start.", status.map_or(0, |s| s.polls));
    m.head("enphase_mqtt_api_errors_total", "counter", "Enphase API errors since start, by kind.");
    for (kind, n) in status.map(|s| &s.api_errors).into_iter().flatten() {
        m.sample("enphase_mqtt_api_errors_total", &[("kind", kind)], n);
    }
    m.one("enphase_mqtt_mqtt_connected", "gauge", "1 while the MQTT session is up.", u8::from(board.mqtt_connected));
    m.one(
        "enphase_mqtt_mqtt_disconnects_total",
        "counter",
        "MQTT connections lost since start.",
        board.mqtt_disconnects,
    );
    m.one(
        "enphase_mqtt_authorization_ok",
        "gauge",
        "1 when the stored tokens are usable and Enphase accepted the last poll.",
        u8::from(authorization_ok),
    );
    m.head(
        "enphase_mqtt_last_success_timestamp_seconds",
        "gauge",
        "When each system's last fully successful poll cycle ended (Unix time).",
    );
    for (id, t) in status.map(|s| &s.last_success).into_iter().flatten() {
        m.sample("enphase_mqtt_last_success_timestamp_seconds", &[("system_id", &id.to_string())], t);
    }
    m.head(
        "enphase_mqtt_last_report_timestamp_seconds",
        "gauge",
        "When each system's gateway last reported (Unix time).",
    );
    for site in board.sites.values() {
        if let Some(t) = site.last_report_at {
            m.sample("enphase_mqtt_last_report_timestamp_seconds", &[("system_id", &site.system_id.to_string())], t);
        }
    }
    m.head(
        "enphase_mqtt_token_expiry_timestamp_seconds",
        "gauge",
        "When the Enphase access token expires (Unix time).",
    );
    if let Some(t) = token_expiry {
        m.sample("enphase_mqtt_token_expiry_timestamp_seconds", &[], t);
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"), (header::CACHE_CONTROL, "no-store")],
        m.text,
    )
        .into_response()
}

/// `auth/start`: a fresh `state`, remembered for [`PENDING_LIFE`], and a 302 to Enphase's
/// authorize page with `redirect_uri` pointing back at this page's `auth/callback`.
async fn auth_start(State(web): State<Web>, headers: HeaderMap) -> Response {
    let root = Root::from_headers(&headers, 1);
    if web.inner.flow == AuthFlow::Password {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Nothing to approve",
            "This bridge logs in with the password grant (enphase.auth.flow: password), so there is no approval in a browser.",
            &root,
        );
    }
    let Some(redirect_uri) = callback_url(&headers) else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Unknown address",
            "The request has no usable Host header, so the address Enphase should send you back to is unknown.",
            &root,
        );
    };
    let state = oauth::random_state();
    let url = oauth::authorize_url(&web.inner.base_url, &web.inner.client_id, &redirect_uri, &state);
    web.pending().remember(state, redirect_uri, Instant::now());
    tracing::info!("consent started on the status page");
    (StatusCode::FOUND, [(header::LOCATION, url.to_string()), (header::CACHE_CONTROL, "no-store".to_string())])
        .into_response()
}

/// `auth/callback?code&state` (or `?error&state`): checks `state`, exchanges the code with the
/// same `redirect_uri`, and stores the tokens; the running bridge uses them from its next call.
async fn auth_callback(State(web): State<Web>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let root = Root::from_headers(&headers, 1);
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect();
    let get = |key: &str| params.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
    let Some(pending) = get("state").and_then(|s| web.pending().take(s, Instant::now())) else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Start again",
            "This answer does not belong to a connection started on this page, or it is older than 10 minutes \
             (its state parameter is unknown). Nothing was stored.",
            &root,
        );
    };
    if let Some(error) = get("error") {
        tracing::warn!(error = %short(error), "the homeowner did not approve the app");
        let text = format!(
            "Enphase answered \"{}\": access was not granted, so enphase-mqtt cannot read your system. Nothing was stored.",
            short(error)
        );
        return message_page(StatusCode::FORBIDDEN, "Not connected", &text, &root);
    }
    let Some(code) = get("code") else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "No code",
            "The address has neither a code nor an error. Nothing was stored.",
            &root,
        );
    };
    let tokens = web.inner.api.tokens();
    let stored = match tokens.oauth().exchange_code(code, &pending.redirect_uri).await {
        Ok(resp) => tokens.store_new(resp, AuthFlow::AuthorizationCode).await,
        Err(err) => Err(err),
    };
    match stored {
        Ok(t) => {
            tracing::info!(
                enl_uid = t.enl_uid.as_deref().unwrap_or("unknown"),
                "Enphase tokens stored from the status page"
            );
            web.inner.authorized.send_modify(|n| *n += 1);
            let text = format!(
                "enphase-mqtt is connected to Enphase{}. The bridge uses the new tokens from its next poll.",
                t.enl_uid.as_deref().map(|u| format!(" (Enlighten user {u})")).unwrap_or_default()
            );
            message_page(StatusCode::OK, "Connected", &text, &root)
        }
        Err(err) => {
            tracing::warn!(error = %err, "the authorization code was not accepted");
            let text = format!(
                "Enphase did not accept the authorization: {}. Nothing was stored.",
                one_line(&err.to_string())
            );
            message_page(StatusCode::BAD_GATEWAY, "Not connected", &text, &root)
        }
    }
}

async fn not_found(headers: HeaderMap) -> Response {
    message_page(StatusCode::NOT_FOUND, "Not found", "There is no such page here.", &Root::from_headers(&headers, 0))
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Where the page's root is, as seen from the current page: the ingress prefix when Home
/// Assistant's proxy sent one, else a relative path (`.` from `/`, `..` from `/auth/…`).
struct Root(String);

impl Root {
    fn from_headers(headers: &HeaderMap, depth: usize) -> Root {
        match ingress_path(headers) {
            Some(prefix) => Root(prefix),
            None if depth == 0 => Root(".".into()),
            None => Root(vec![".."; depth].join("/")),
        }
    }
}

/// `X-Ingress-Path` without its trailing slash, if it is a plain absolute path.
fn ingress_path(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-ingress-path")?.to_str().ok()?.trim();
    let ok = value.starts_with('/')
        && !value.starts_with("//")
        && value.len() <= 512
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "/-_.~%".contains(c));
    ok.then(|| value.trim_end_matches('/').to_string())
}

/// This page's own `…/auth/callback` as the browser sees it: scheme from `X-Forwarded-Proto`, host
/// from `X-Forwarded-Host` or `Host`, and the ingress prefix.
fn callback_url(headers: &HeaderMap) -> Option<String> {
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let scheme = match first("x-forwarded-proto").map(|p| p.to_ascii_lowercase()).as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    let host = first("x-forwarded-host").or_else(|| first("host"))?;
    let host_ok = host.len() <= 255
        && host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c))
        && !host.starts_with([':', '.']);
    if !host_ok {
        return None;
    }
    let prefix = ingress_path(headers).unwrap_or_default();
    let url = format!("{scheme}://{host}{prefix}/auth/callback");
    Url::parse(&url).ok().map(|_| url)
}

/// Text fit for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An OAuth error word from the query, cut short and limited to safe characters.
fn short(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(40).collect()
}

/// One line, at most 300 characters.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect()
}

/// `1,500,000`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `5 min ago`, `in 3 h`, `now`.
fn relative(now: i64, t: i64) -> String {
    let d = t - now;
    let span = |s: i64| match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3_600),
        s => format!("{} days", s / 86_400),
    };
    match d {
        0 => "now".into(),
        d if d < 0 => format!("{} ago", span(-d)),
        d => format!("in {}", span(d)),
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}\
    h1{margin-bottom:0}h2{margin-top:1.6em;font-size:1.2em}table{border-collapse:collapse}\
    th,td{text-align:left;padding:.3em .8em .3em 0;vertical-align:top}.systems th{border-bottom:1px solid #ccc}\
    .muted{color:#777;font-size:.9em}.bad{color:#b00}\
    .button{display:inline-block;background:#f37321;color:#fff;padding:.6em 1.2em;border-radius:4px;text-decoration:none;font-weight:bold}";

/// A whole HTML page; `refresh` reloads it every 30 s.
fn html(status: StatusCode, title: &str, body: &str, refresh: bool) -> Response {
    let refresh = if refresh { "<meta http-equiv=\"refresh\" content=\"30\">" } else { "" };
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{}</title><style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    );
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], page)
        .into_response()
}

/// A page with a title, one paragraph and a link back to the status page.
fn message_page(status: StatusCode, title: &str, text: &str, root: &Root) -> Response {
    let body = format!(
        "<h1 id=\"title\">{}</h1><p id=\"message\">{}</p><p><a href=\"{}/\">Back to the status page</a></p>",
        esc(title),
        esc(text),
        esc(&root.0)
    );
    html(status, &format!("enphase-mqtt: {title}"), &body, false)
}

/// Prometheus text exposition.
#[derive(Default)]
struct Metrics {
    text: String,
}

impl Metrics {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", label_value(v))).collect();
            let _ = write!(self.text, "{{{}}}", inner.join(","));
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn one(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        self.sample(name, &[], value);
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
    }

    #[test]
    fn links_are_relative_unless_ingress_gives_a_prefix() {
        assert_eq!(Root::from_headers(&HeaderMap::new(), 0).0, ".");
        assert_eq!(Root::from_headers(&HeaderMap::new(), 1).0, "..");
        let h = headers(&[("x-ingress-path", "/api/hassio_ingress/Abc-12_x/")]);
        assert_eq!(Root::from_headers(&h, 1).0, "/api/hassio_ingress/Abc-12_x");
        for bad in ["//evil.example", "/a\"onload=x", "relative/path", "/a b"] {
            let h = headers(&[("x-ingress-path", bad)]);
            assert_eq!(Root::from_headers(&h, 0).0, ".", "{bad} is ignored");
        }
    }

    #[test]
    fn callback_url_follows_the_proxy_headers() {
        assert_eq!(callback_url(&headers(&[("host", "10.1.2.3:8099")])).unwrap(), "http://10.1.2.3:8099/auth/callback");
        let h = headers(&[
            ("host", "172.30.33.4:8099"),
            ("x-forwarded-host", "ha.example.org"),
            ("x-forwarded-proto", "https"),
            ("x-ingress-path", "/api/hassio_ingress/tok"),
        ]);
        assert_eq!(callback_url(&h).unwrap(), "https://ha.example.org/api/hassio_ingress/tok/auth/callback");
        assert_eq!(callback_url(&HeaderMap::new()), None);
        assert_eq!(callback_url(&headers(&[("host", "a/b@evil")])), None);
    }

    #[test]
    fn metrics_escape_labels_and_carry_help_and_type() {
        let mut m = Metrics::default();
        m.head("x_total", "counter", "X.");
        m.sample("x_total", &[("kind", "a\"b\\c")], 3);
        m.one("y", "gauge", "Y.", 1);
        assert_eq!(
            m.text,
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{kind=\"a\\\"b\\\\c\"} 3\n# HELP y Y.\n# TYPE y gauge\ny 1\n"
        );
    }

    #[test]
    fn big_numbers_get_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_500_000), "1,500,000");
        assert_eq!(thousands(-12_345), "-12,345");
    }

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative(1000, 1000), "now");
        assert_eq!(relative(1000, 700), "5 min ago");
        assert_eq!(relative(1000, 1030), "in 30 s");
        assert_eq!(relative(0, 3 * 86_400), "in 3 days");
    }

    #[test]
    fn pending_states_expire_are_single_use_and_capped() {
        let start = Instant::now();
        let mut list = PendingList::default();
        list.remember("a".into(), "http://h/auth/callback".into(), start);
        list.remember("b".into(), "http://h/auth/callback".into(), start);
        assert_eq!(list.take("a", start + Duration::from_secs(5)).unwrap().redirect_uri, "http://h/auth/callback");
        assert!(list.take("a", start + Duration::from_secs(6)).is_none(), "a state works once");
        assert!(list.take("b", start + PENDING_LIFE).is_none(), "a state expires after 10 minutes");
        for i in 0..MAX_PENDING + 5 {
            list.remember(format!("s{i}"), String::new(), start);
        }
        assert_eq!(list.0.len(), MAX_PENDING);
        assert!(list.take("s0", start).is_none(), "the oldest is dropped beyond the cap");
        assert!(list.take(&format!("s{}", MAX_PENDING + 4), start).is_some());
    }
}
