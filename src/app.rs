//! Runs the subcommands: loads the config, builds the parts, and maps failures to exit codes
//! (0 success, 2 bad config or usage, 3 authorization needed or refused, 1 anything else).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::DateTime;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bridge::{Bridge, BridgeOptions};
use crate::cli::{AuthCommand, Cli, Command, SimulateArgs};
use crate::clock::{self, SharedClock};
use crate::config::{self, AuthFlow, Config, ConfigError};
use crate::enlighten::tokens::StoredTokens;
use crate::enlighten::{ApiError, EnlightenClient, oauth};
use crate::fsutil::{self, FileLock};
use crate::home_assistant::Topics;
use crate::mqtt;
use crate::poller::{Poller, PollerOptions};
use crate::simulator;
use crate::status::BoardReceiver;

/// Prints a line to stdout; a closed stdout (a pipe whose reader left) is not worth a panic.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Exit code for a bad config or bad usage.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code when the homeowner must authorize (again), or refused.
pub const EXIT_AUTH: u8 = 3;

/// Authorization is needed or was refused (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct AuthNeeded(pub String);

/// Sets up logging to stderr; `RUST_LOG` (or `ENPHASE_MQTT_LOG`) picks the level, `info` by default.
pub fn init_logging() {
    let mut filter =
        std::env::var("ENPHASE_MQTT_LOG").or_else(|_| std::env::var("RUST_LOG")).unwrap_or_else(|_| "info".into());
    // The embedded broker of `demo` logs every connection (and an error on each clean disconnect):
    // silent unless asked for by name.
    if !filter.contains("rumqttd") {
        filter.push_str(",rumqttd=off");
    }
    let env_filter = tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|err| {
        eprintln!("enphase-mqtt: ENPHASE_MQTT_LOG / RUST_LOG: {err}; logging at info");
        "info".into()
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// The exit code for a failure.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.is::<ConfigError>() {
            return EXIT_CONFIG;
        }
        if cause.is::<AuthNeeded>() {
            return EXIT_AUTH;
        }
        if let Some(ApiError::AuthorizationNeeded { .. }) = cause.downcast_ref::<ApiError>() {
            return EXIT_AUTH;
        }
    }
    1
}

/// Runs one command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = match &cli.clock_url {
        Some(url) => {
            if !url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https")) {
                return Err(ConfigError::one(format!("--clock-url: {url:?} is not an http:// URL")).into());
            }
            crate::simulator::follow(url).await?
        }
        None => clock::system(),
    };
    match cli.command {
        Command::CheckConfig => check_config(&cli.config),
        Command::Run => {
            let config = load_config(&cli.config)?;
            run_bridge(config, clock).await
        }
        Command::Auth(cmd) => {
            let config = load_config(&cli.config)?;
            auth(cmd, &config, clock).await
        }
        Command::Simulate(args) => simulate(args).await,
        Command::Demo(args) => crate::demo::run(args).await,
    }
}

/// Loads the config; problems are printed one per line, prefixed with the file name.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    config::load(path).map_err(|err| {
        let name = path.display().to_string();
        let problems = err
            .problems
            .iter()
            .map(|p| if p.starts_with(&name) { p.clone() } else { format!("{name}: {p}") })
            .collect();
        anyhow::Error::new(ConfigError { problems })
    })
}

fn check_config(path: &Path) -> anyhow::Result<()> {
    let c = load_config(path)?;
    out!(
        "{}: OK (plan {}, {} flow, up to {} hits a minute and {} a month; MQTT {}:{}; state in {})",
        path.display(),
        c.enphase.plan,
        c.enphase.auth.flow.as_str(),
        c.enphase.minute_limit(),
        c.enphase.month_limit(),
        c.mqtt.host,
        c.mqtt.port,
        c.state_dir.display()
    );
    Ok(())
}

/// Takes the one-process-per-`state_dir` lock, held for the life of `run`.
pub fn instance_lock(state_dir: &Path) -> anyhow::Result<FileLock> {
    fsutil::ensure_private_dir(state_dir).context("state_dir")?;
    let path = state_dir.join("enphase-mqtt.lock");
    match FileLock::try_acquire(&path).with_context(|| format!("locking {}", path.display()))? {
        Some(lock) => Ok(lock),
        None => bail!(
            "another enphase-mqtt is already running with state_dir {}; two would burn each other's refresh tokens",
            state_dir.display()
        ),
    }
}

/// The `state` saved by `auth url`, checked when the code comes back.
#[derive(Debug, Serialize, Deserialize)]
struct PendingAuthorization {
    state: String,
    redirect_uri: String,
    created_at: i64,
}

const PENDING_FILE: &str = "oauth_state.json";
/// How long a saved `state` stays good.
const PENDING_LIFE_SECS: i64 = 3600;

async fn auth(cmd: AuthCommand, config: &Config, clock: SharedClock) -> anyhow::Result<()> {
    let client = EnlightenClient::from_config(&config.enphase, &config.state_dir, clock.clone())?;
    let tokens = client.tokens();
    match cmd {
        AuthCommand::Url => {
            let redirect = config.enphase.auth.redirect_uri.as_str();
            let state = oauth::random_state();
            let pending = PendingAuthorization {
                state: state.clone(),
                redirect_uri: redirect.into(),
                created_at: clock.now_secs(),
            };
            fsutil::ensure_private_dir(&config.state_dir).context("state_dir")?;
            let pending_path = config.state_dir.join(PENDING_FILE);
            fsutil::write_atomic(&pending_path, &serde_json::to_vec(&pending)?)
                .with_context(|| format!("writing {}", pending_path.display()))?;
            let url = oauth::authorize_url(&config.enphase.base_url, &config.enphase.client_id, redirect, &state);
            out!("{url}");
            eprintln!(
                "Open this URL, log in with the Enlighten account and approve the app, then run\n  enphase-mqtt auth code <CODE>\nwith the code Enphase shows (or the whole address the browser ends on)."
            );
            Ok(())
        }
        AuthCommand::Code { code } => {
            let (code, state) = split_code(&code)?;
            let redirect = config.enphase.auth.redirect_uri.as_str().to_string();
            // A bare code cannot be checked; a pasted address always is.
            if let Some(state) = state {
                check_pending_state(&config.state_dir, &state, clock.now_secs())?;
            }
            let resp = tokens.oauth().exchange_code(&code, &redirect).await.map_err(auth_error)?;
            let stored = tokens.store_new(resp, AuthFlow::AuthorizationCode).await?;
            let _ = std::fs::remove_file(config.state_dir.join(PENDING_FILE));
            out!("Authorized{}; tokens stored in {}.", uid_note(&stored), tokens.store().path().display());
            Ok(())
        }
        AuthCommand::Login { listen, timeout } => {
            if config.enphase.auth.flow == AuthFlow::Password {
                let resp = tokens
                    .oauth()
                    .password(&config.enphase.auth.username, &config.enphase.auth.password)
                    .await
                    .map_err(auth_error)?;
                let stored = tokens.store_new(resp, AuthFlow::Password).await?;
                out!("Logged in with the password grant{}.", uid_note(&stored));
                return Ok(());
            }
            login(config, &client, listen, Duration::from_secs(timeout)).await
        }
        AuthCommand::Status => status(config, &client, clock.now_secs()).await,
        AuthCommand::Refresh => {
            let stored = tokens.force_refresh().await.map_err(auth_error)?;
            out!("Refreshed; the access token expires at {}.", iso(stored.expires_at));
            Ok(())
        }
    }
}

/// Turns an authorization refusal into exit code 3; other failures stay as they are.
fn auth_error(err: ApiError) -> anyhow::Error {
    match err {
        ApiError::AuthorizationNeeded { reason } => AuthNeeded(reason).into(),
        other => anyhow::Error::new(other),
    }
}

fn uid_note(t: &StoredTokens) -> String {
    t.enl_uid.as_ref().map(|u| format!(" (Enlighten user {})", u.escape_debug())).unwrap_or_default()
}

/// Accepts a bare code, or the full redirect URL with `code` and `state` (or `error`). A URL
/// without `state` is refused: it cannot be told from one made up by someone else.
fn split_code(input: &str) -> anyhow::Result<(String, Option<String>)> {
    let input = input.trim();
    let Ok(url) = url::Url::parse(input) else {
        if input.is_empty() || !input.chars().all(|c| c.is_ascii_graphic()) {
            // Not shown: it may be a real code with a stray character.
            return Err(ConfigError::one("auth code: that is not an authorization code (empty, or it has spaces or other characters a code has not)".into()).into());
        }
        return Ok((input.to_string(), None));
    };
    let get = |k: &str| url.query_pairs().find(|(key, _)| key == k).map(|(_, v)| v.into_owned());
    if let Some(error) = get("error") {
        let error: String = error.chars().take(60).collect::<String>().escape_debug().collect();
        return Err(AuthNeeded(format!("the homeowner did not approve the app (error={error})")).into());
    }
    match (get("code"), get("state")) {
        (Some(code), Some(state)) if !code.is_empty() && !state.is_empty() => Ok((code, Some(state))),
        (Some(code), _) if !code.is_empty() => Err(ConfigError::one(
            "auth code: the address has no state parameter; paste the whole address the browser ended on, or the code alone".into(),
        )
        .into()),
        _ => Err(ConfigError::one("auth code: the address has no code parameter".into()).into()),
    }
}

fn check_pending_state(state_dir: &Path, state: &str, now: i64) -> anyhow::Result<()> {
    let path = state_dir.join(PENDING_FILE);
    let pending: PendingAuthorization = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| AuthNeeded(format!("no pending authorization in {}: run `auth url` first", path.display())))?;
    if pending.state != state {
        return Err(AuthNeeded(
            "the state in the URL does not match the one `auth url` made: start again with `auth url`".into(),
        )
        .into());
    }
    if now - pending.created_at > PENDING_LIFE_SECS {
        return Err(AuthNeeded("the authorization started over an hour ago: start again with `auth url`".into()).into());
    }
    Ok(())
}

async fn status(config: &Config, client: &EnlightenClient, now: i64) -> anyhow::Result<()> {
    let ledger = client.ledger().snapshot();
    out!("flow:              {}", config.enphase.auth.flow.as_str());
    out!(
        "hits:              {} of {} this month, {} of {} in the last minute",
        ledger.month_used,
        ledger.month_limit,
        ledger.minute_used,
        ledger.minute_limit
    );
    let stored = client.tokens().current().await.map_err(auth_error)?;
    let Some(t) = stored else {
        out!("tokens:            none");
        out!("authorization:     needed (run `enphase-mqtt auth login`)");
        return Err(AuthNeeded("authorization needed: no tokens stored yet".into()).into());
    };
    // Shown escaped: it came from the network.
    out!("enl_uid:           {}", t.enl_uid.as_deref().unwrap_or("unknown").escape_debug());
    let left = t.expires_at.saturating_sub(now);
    let when = if left > 0 { format!("in {}", human(left)) } else { format!("{} ago", human(left.saturating_neg())) };
    out!("access token:      expires {} ({when})", iso(t.expires_at));
    out!("refresh token:     issued {} ({} ago)", iso(t.issued_at), human(now.saturating_sub(t.issued_at)));
    out!("authorized:        {}", iso(t.authorized_at));
    match t.reauth_reason(now) {
        None => {
            out!("authorization:     OK");
            Ok(())
        }
        Some(reason) => {
            out!("authorization:     needed ({reason})");
            Err(AuthNeeded(format!("authorization needed: {reason}")).into())
        }
    }
}

/// `auth login`: serve the redirect target, print the authorize URL, wait for the redirect.
async fn login(config: &Config, client: &EnlightenClient, listen: SocketAddr, timeout: Duration) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen} for the redirect"))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() { "localhost".to_string() } else { local.ip().to_string() };
    let host = if local.is_ipv6() && !local.ip().is_unspecified() { format!("[{host}]") } else { host };
    let redirect_uri = format!("http://{host}:{}/callback", local.port());
    let state = oauth::random_state();
    let url = oauth::authorize_url(&config.enphase.base_url, &config.enphase.client_id, &redirect_uri, &state);
    out!("{url}");
    eprintln!("Open the URL above in a browser, log in to Enlighten and approve the app. Waiting on {local} …");

    let outcome = crate::login::wait_for_redirect(listener, state, timeout).await?;
    let code = match outcome {
        Ok(code) => code,
        Err(refusal) => return Err(AuthNeeded(refusal).into()),
    };
    let resp = client.tokens().oauth().exchange_code(&code, &redirect_uri).await.map_err(auth_error)?;
    let stored = client.tokens().store_new(resp, AuthFlow::AuthorizationCode).await?;
    out!("Authorized{}; tokens stored in {}.", uid_note(&stored), client.tokens().store().path().display());
    Ok(())
}

/// `run`: the poller, the bridge and the MQTT connection, until SIGTERM or Ctrl-C.
async fn run_bridge(config: Config, clock: SharedClock) -> anyhow::Result<()> {
    // The status page binds first, so that a taken port fails at once and the page can lead the
    // homeowner through the first consent before the bridge can start.
    let page = config.http.listen.map(|addr| crate::web::WebListener::bind(addr).context("http.listen")).transpose()?;
    let running = match (start(&config, clock.clone()).await, &page) {
        (Ok(running), _) => running,
        (Err(err), Some(page))
            if exit_code(&err) == EXIT_AUTH && config.enphase.auth.flow == AuthFlow::AuthorizationCode =>
        {
            tracing::warn!(reason = %format!("{err:#}"), "the bridge cannot start yet");
            if !crate::web::serve_until_authorized(page, &config, clock.clone()).await? {
                return Ok(());
            }
            start(&config, clock.clone()).await?
        }
        (Err(err), _) => return Err(err),
    };
    if let Some(page) = page {
        tracing::info!(url = %page.url(), "status page");
        let web = crate::web::Web::new(&config, running.api.clone(), Some(running.board.clone()), clock);
        let shutdown = running.shutdown.clone();
        running.spawn(async move { crate::web::serve(&page, web, shutdown).await });
    }
    tracing::info!(broker = %format!("{}:{}", config.mqtt.host, config.mqtt.port), "enphase-mqtt running");
    wait_for_signal().await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

/// The running bridge: its tasks, and what the web page and `demo` read.
pub struct Running {
    /// The live picture (sites, bridge status, MQTT session).
    pub board: BoardReceiver,
    /// The Enphase client (tokens, ledger).
    pub api: Arc<EnlightenClient>,
    /// Cancelled to stop every task.
    pub shutdown: CancellationToken,
    tracker: TaskTracker,
    _lock: FileLock,
}

impl Running {
    /// Stops every task: the bridge publishes `offline` and disconnects; waits up to 5 s.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await.is_err() {
            tracing::warn!("tasks did not stop within 5 s");
        }
    }

    /// Runs `task` alongside the bridge's own tasks (stopped with them).
    pub fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, task: F) {
        self.tracker.spawn(task);
    }
}

/// Takes the state lock, checks the tokens, and starts the MQTT connection, the bridge and the poller.
pub async fn start(config: &Config, clock: SharedClock) -> anyhow::Result<Running> {
    let lock = instance_lock(&config.state_dir)?;
    let api = Arc::new(EnlightenClient::from_config(&config.enphase, &config.state_dir, clock.clone())?);
    // Start only with tokens that can work; later losses are reported over MQTT instead.
    match api.tokens().current().await.map_err(auth_error)? {
        None => return Err(AuthNeeded("no Enphase tokens yet: run `enphase-mqtt auth login` first".into()).into()),
        Some(t) => {
            if let Some(reason) = t.reauth_reason(clock.now_secs())
                && config.enphase.auth.flow != AuthFlow::Password
            {
                return Err(AuthNeeded(format!("authorization needed: {reason}; run `enphase-mqtt auth login`")).into());
            }
        }
    }
    let topics = Topics::new(&config.mqtt.base_topic, &config.mqtt.discovery_prefix);
    let (client, eventloop) = mqtt::connect(&config.mqtt, &topics.bridge_availability())?;

    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (input_tx, input_rx) = mpsc::channel(1024);
    let (refresh_tx, refresh_rx) = mpsc::channel(1);
    let bridge_opts = BridgeOptions {
        topics: topics.clone(),
        discovery: config.mqtt.discovery,
        mode: config.mqtt.discovery_mode,
        cleanup_window: Duration::from_secs(3),
    };
    let poller_opts = PollerOptions {
        plan: config.enphase.plan,
        systems: config.enphase.systems.clone(),
        min_interval: Duration::from_secs(config.enphase.min_poll_interval_secs),
        stale_after: Duration::from_secs(config.enphase.stale_after_secs),
        refresh_response_topic: topics.refresh_response(),
        intervals_topic: format!("{}/{{id}}/intervals", topics.base()),
        state_dir: config.state_dir.clone(),
    };
    let bridge = Bridge::new(client, bridge_opts, Some(refresh_tx));
    let board = bridge.board();
    tracker.spawn(mqtt::run(eventloop, event_tx, shutdown.clone()));
    tracker.spawn(bridge.run(input_rx, event_rx, shutdown.clone()));
    tracker.spawn(Poller::new(api.clone(), input_tx, refresh_rx, clock, poller_opts).run(shutdown.clone()));
    Ok(Running { board, api, shutdown, tracker, _lock: lock })
}

/// `simulate` bounds: the simulator's own speed limit, a large partner fleet, ten years.
const MAX_SIM_SPEED: f64 = simulator::MAX_SPEED;
const MAX_SIM_SYSTEMS: usize = 100_000;
const MAX_SIM_TTL_SECS: i64 = 10 * 366 * 86_400;

async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    let usage = |problem: String| anyhow::Error::new(ConfigError::one(problem));
    let plan = args.plan.parse().map_err(|e| usage(format!("--plan: {e}")))?;
    if !(args.speed > 0.0 && args.speed <= MAX_SIM_SPEED) {
        return Err(usage(format!("--speed: {} must be above 0 and at most {MAX_SIM_SPEED}", args.speed)));
    }
    if !(1..=MAX_SIM_SYSTEMS).contains(&args.systems) {
        return Err(usage(format!("--systems: {} must be from 1 to {MAX_SIM_SYSTEMS}", args.systems)));
    }
    // Token lives of a second up to ten years: the simulator's clock arithmetic stays far from
    // overflowing, and Enphase's own are a day and a month.
    for (flag, ttl) in [("--access-ttl", args.access_ttl), ("--refresh-ttl", args.refresh_ttl)] {
        if ttl.is_some_and(|t| !(1..=MAX_SIM_TTL_SECS).contains(&t)) {
            return Err(usage(format!("{flag}: {} must be from 1 to {MAX_SIM_TTL_SECS} seconds", ttl.unwrap_or(0))));
        }
    }
    let mut opts =
        simulator::SimOptions { systems: args.systems, plan, speed: args.speed, seed: args.seed, ..Default::default() };
    if let Some(ttl) = args.access_ttl {
        opts.access_ttl_secs = ttl;
    }
    if let Some(ttl) = args.refresh_ttl {
        opts.refresh_ttl_secs = ttl;
    }
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        stopper.cancel();
    });
    simulator::serve(opts, args.listen, shutdown).await
}

/// Resolves on Ctrl-C or SIGTERM (Docker and the Home Assistant Supervisor send SIGTERM).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut term) = signal(SignalKind::terminate()) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Epoch seconds as ISO 8601 UTC.
pub fn iso(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).map_or_else(|| secs.to_string(), |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
}

fn human(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_or_redirect_url() {
        assert_eq!(split_code(" 2TJk7M ").unwrap(), ("2TJk7M".to_string(), None));
        assert_eq!(
            split_code("https://api.enphaseenergy.com/oauth/redirect_uri?code=abc&state=s1").unwrap(),
            ("abc".to_string(), Some("s1".to_string()))
        );
        let denied = split_code("http://x/cb?error=access_denied&state=s").unwrap_err();
        assert_eq!(exit_code(&denied), EXIT_AUTH);
        for usage in ["my code", "", "https://x/?state=1", "https://x/redirect_uri?code=abc"] {
            let err = split_code(usage).unwrap_err();
            assert_eq!(exit_code(&err), EXIT_CONFIG, "{usage:?}: {err}");
            assert!(!err.to_string().contains("my code"), "the input is not echoed: {err}");
        }
    }

    #[test]
    fn exit_codes_follow_the_error_kind() {
        assert_eq!(exit_code(&anyhow::Error::new(ConfigError { problems: vec!["x".into()] })), EXIT_CONFIG);
        assert_eq!(exit_code(&anyhow::Error::new(ApiError::AuthorizationNeeded { reason: "r".into() })), EXIT_AUTH);
        assert_eq!(exit_code(&anyhow::anyhow!("other").context("while doing")), 1);
    }
}
