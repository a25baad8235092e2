//! The Enlighten cloud in miniature: an independent model of the Monitoring API v4 and its OAuth
//! server, with a simulated fleet, quotas, faults and a hit log, for tests, `demo` and `simulate`.
//!
//! The simulator is a second reading of the API reference, built from its own model: it never
//! uses the client's types in `crate::enlighten`.
//!
//! Layout: [`model`] holds the fleet and its physics, `api` the `/api/v4` handlers, `oauth` the
//! authorize and token endpoints, `gate` the hit log, quota, fault and auth checks in front of
//! them, `quota` the plan limits, and `admin` the `/admin` test controls.

mod admin;
mod api;
mod errors;
mod follow;
mod gate;
pub mod model;
mod oauth;
mod params;
pub mod places;
pub mod quota;
mod rng;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::{get, post};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::clock::SharedClock;

pub use follow::{FollowedClock, follow};
pub use gate::{FaultKind, Target};
pub use model::{Fleet, SimSystem, SystemKind, SystemSnapshot};

/// Fastest simulated clock accepted: a million simulated seconds per real second.
pub const MAX_SPEED: f64 = 1_000_000.0;

/// How long [`SimHandle::shutdown`] waits for open connections before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The developer plan of the simulated application: its quotas and access controls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SimPlan {
    /// Free plan: 10 hits a minute, 1,000 a month, no device-level endpoints.
    #[default]
    Watt,
    /// 50 a minute, 50,000 a month.
    Kilowatt,
    /// 100 a minute, 300,000 a month.
    Megawatt,
    /// 300 a minute, 1,500,000 a month.
    Partner,
}

impl SimPlan {
    /// Hits allowed per clock minute.
    pub fn per_minute(self) -> u64 {
        match self {
            SimPlan::Watt => 10,
            SimPlan::Kilowatt => 50,
            SimPlan::Megawatt => 100,
            SimPlan::Partner => 300,
        }
    }

    /// Hits allowed per UTC calendar month.
    pub fn per_month(self) -> u64 {
        match self {
            SimPlan::Watt => 1_000,
            SimPlan::Kilowatt => 50_000,
            SimPlan::Megawatt => 300_000,
            SimPlan::Partner => 1_500_000,
        }
    }

    /// Whether the plan includes Device Level Monitoring.
    pub fn allows_device_level(self) -> bool {
        self != SimPlan::Watt
    }
}

impl fmt::Display for SimPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SimPlan::Watt => "Watt",
            SimPlan::Kilowatt => "Kilowatt",
            SimPlan::Megawatt => "Megawatt",
            SimPlan::Partner => "Partner",
        })
    }
}

/// A plan name that is none of watt, kilowatt, megawatt or partner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown plan {0:?} (expected watt, kilowatt, megawatt or partner)")]
pub struct UnknownPlan(pub String);

impl FromStr for SimPlan {
    type Err = UnknownPlan;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "watt" => Ok(SimPlan::Watt),
            "kilowatt" => Ok(SimPlan::Kilowatt),
            "megawatt" => Ok(SimPlan::Megawatt),
            "partner" => Ok(SimPlan::Partner),
            _ => Err(UnknownPlan(s.to_owned())),
        }
    }
}

/// Everything that shapes a simulator.
#[derive(Clone)]
pub struct SimOptions {
    /// Fleet size.
    pub systems: usize,
    /// Developer plan (quotas and access controls).
    pub plan: SimPlan,
    /// The application's API key (`key` query parameter).
    pub api_key: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: String,
    /// Enlighten user name for the password grant.
    pub username: String,
    /// Enlighten password for the password grant.
    pub password: String,
    /// Life of access tokens, simulated seconds.
    pub access_ttl_secs: i64,
    /// Life of refresh tokens, simulated seconds.
    pub refresh_ttl_secs: i64,
    /// Simulated seconds per real second (0 freezes the clock; at most [`MAX_SPEED`]).
    pub speed: f64,
    /// Added to simulated time at start, seconds.
    pub offset_secs: i64,
    /// Fleet generation seed.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            systems: 3,
            plan: SimPlan::Watt,
            api_key: "sim-api-key".into(),
            client_id: "sim-client-id".into(),
            client_secret: "sim-client-secret".into(),
            username: "demo@example.com".into(),
            password: "demo-password".into(),
            access_ttl_secs: 86_393,
            refresh_ttl_secs: 30 * 86_400,
            speed: 1.0,
            offset_secs: 0,
            seed: 1,
        }
    }
}

impl fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimOptions")
            .field("systems", &self.systems)
            .field("plan", &self.plan)
            .field("api_key", &self.api_key)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("username", &self.username)
            .field("password", &"***")
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .field("speed", &self.speed)
            .field("offset_secs", &self.offset_secs)
            .field("seed", &self.seed)
            .finish()
    }
}

/// Simulated time: `sim_now = sim_anchor + (real_now − real_anchor) × speed`, re-anchored on
/// every change so that simulated time stays continuous.
#[derive(Debug)]
struct SimClock {
    real_anchor_ms: i64,
    sim_anchor_ms: i64,
    speed: f64,
}

impl SimClock {
    fn now_ms(&self, real_ms: i64) -> i64 {
        let elapsed = (real_ms - self.real_anchor_ms) as f64 * self.speed;
        self.sim_anchor_ms.saturating_add(elapsed as i64)
    }
}

/// Shared state behind a [`Simulator`].
#[derive(Debug)]
struct Inner {
    opts: SimOptions,
    real: SharedClock,
    clock: Mutex<SimClock>,
    fleet: Fleet,
    tokens: Mutex<oauth::TokenBook>,
    quota: Mutex<quota::Ledger>,
    faults: Mutex<gate::Faults>,
    hits: Mutex<gate::HitLog>,
    /// Cancelled at shutdown: releases hanging requests and delayed token answers.
    stop: CancellationToken,
    enl_uid: String,
    password_changed: i64,
}

/// The simulated Enlighten cloud: fleet model, tokens, quotas, faults, hit log and clock.
/// Cheap to clone; all clones share the same state.
#[derive(Debug, Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the whole simulator down with a poisoned lock.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Simulator {
    /// A simulator whose simulated clock starts at `clock`'s now (plus `opts.offset_secs`).
    /// `clock` is the real time source: [`crate::clock::SystemClock`] normally, a
    /// [`crate::clock::ManualClock`] in benchmarks.
    pub fn new(mut opts: SimOptions, clock: SharedClock) -> Self {
        if !(opts.speed.is_finite() && (0.0..=MAX_SPEED).contains(&opts.speed)) {
            warn!(speed = opts.speed, "invalid simulator speed, using 1.0");
            opts.speed = 1.0;
        }
        opts.access_ttl_secs = opts.access_ttl_secs.max(1);
        opts.refresh_ttl_secs = opts.refresh_ttl_secs.max(1);
        let real_ms = clock.now_ms();
        let sim_ms = real_ms.saturating_add(opts.offset_secs.saturating_mul(1_000));
        let start = sim_ms.div_euclid(1_000);
        let fleet = Fleet::generate(opts.systems, opts.seed, start);
        let enl_uid = (3_000_000 + rng::hash(&[opts.seed, rng::salt::USER]) % 1_000_000).to_string();
        let inner = Inner {
            tokens: Mutex::new(oauth::TokenBook::new(opts.access_ttl_secs, opts.refresh_ttl_secs)),
            clock: Mutex::new(SimClock { real_anchor_ms: real_ms, sim_anchor_ms: sim_ms, speed: opts.speed }),
            real: clock,
            fleet,
            quota: Mutex::new(quota::Ledger::default()),
            faults: Mutex::new(gate::Faults::default()),
            hits: Mutex::new(gate::HitLog::default()),
            stop: CancellationToken::new(),
            enl_uid,
            password_changed: start - 40 * 86_400,
            opts,
        };
        Simulator { inner: Arc::new(inner) }
    }

    /// Simulated now, epoch seconds.
    pub fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1_000)
    }

    /// Simulated now, epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let real = self.real_ms();
        lock(&self.inner.clock).now_ms(real)
    }

    /// Current speed (simulated seconds per real second).
    pub fn speed(&self) -> f64 {
        lock(&self.inner.clock).speed
    }

    /// Changes the speed (when given) and moves simulated time by `offset_secs`, keeping it
    /// continuous across the speed change.
    pub fn adjust_clock(&self, speed: Option<f64>, offset_secs: i64) {
        let real = self.real_ms();
        let mut clock = lock(&self.inner.clock);
        let now = clock.now_ms(real);
        clock.real_anchor_ms = real;
        clock.sim_anchor_ms = now.saturating_add(offset_secs.saturating_mul(1_000));
        if let Some(speed) = speed.filter(|s| (0.0..=MAX_SPEED).contains(s)) {
            clock.speed = speed;
        }
    }

    /// The options the simulator runs with.
    pub fn options(&self) -> &SimOptions {
        &self.inner.opts
    }

    /// Read-only access to the fleet model (for benchmarks comparing a client to the truth).
    pub fn fleet(&self) -> &Fleet {
        &self.inner.fleet
    }

    /// Every route: `/api/v4/...`, `/oauth/...` and `/admin/...`.
    pub fn router(&self) -> Router {
        let sys = "/api/v4/systems/{sid}";
        Router::new()
            .route("/api/v4/systems", get(api::systems))
            .route("/api/v4/systems/retrieve_system_id", get(api::retrieve_system_id))
            .route("/api/v4/systems/inverters_summary_by_envoy_or_site", get(api::inverters_summary))
            .route(sys, get(api::system))
            .route(&format!("{sys}/summary"), get(api::summary))
            .route(&format!("{sys}/devices"), get(api::devices))
            .route(&format!("{sys}/latest_telemetry"), get(api::latest_telemetry))
            .route(&format!("{sys}/telemetry/production_micro"), get(api::production_micro))
            .route(&format!("{sys}/telemetry/production_meter"), get(api::production_meter))
            .route(&format!("{sys}/telemetry/consumption_meter"), get(api::consumption_meter))
            .route(&format!("{sys}/telemetry/battery"), get(api::battery_telemetry))
            .route(&format!("{sys}/energy_import_telemetry"), get(api::import_telemetry))
            .route(&format!("{sys}/energy_export_telemetry"), get(api::export_telemetry))
            .route(&format!("{sys}/energy_lifetime"), get(api::energy_lifetime))
            .route(&format!("{sys}/consumption_lifetime"), get(api::consumption_lifetime))
            .route(&format!("{sys}/battery_lifetime"), get(api::battery_lifetime))
            .route(&format!("{sys}/energy_import_lifetime"), get(api::import_lifetime))
            .route(&format!("{sys}/energy_export_lifetime"), get(api::export_lifetime))
            .route(&format!("{sys}/production_meter_readings"), get(api::production_meter_readings))
            .route(&format!("{sys}/consumption_meter_readings"), get(api::consumption_meter_readings))
            .route(&format!("{sys}/storage_meter_readings"), get(api::storage_meter_readings))
            .route(&format!("{sys}/devices/micros/telemetry"), get(api::micros_telemetry))
            .route(&format!("{sys}/devices/micros/{{serial}}/telemetry"), get(api::micro_telemetry))
            .route(&format!("{sys}/devices/encharges/{{serial}}/telemetry"), get(api::encharge_telemetry))
            .route(&format!("{sys}/events"), get(api::events))
            .route(&format!("{sys}/alarms"), get(api::alarms))
            .route(&format!("{sys}/open_events"), get(api::open_events))
            .route(&format!("{sys}/open_alarms"), get(api::open_alarms))
            .route("/oauth/authorize", get(oauth::authorize))
            .route("/oauth/token", post(oauth::token).get(oauth::token))
            .route("/oauth/redirect_uri", get(oauth::redirect_page))
            .route("/admin/faults", post(admin::faults).delete(admin::clear_faults))
            .route("/admin/revoke", post(admin::revoke))
            .route("/admin/force429", post(admin::force429))
            .route("/admin/deny", post(admin::deny))
            .route("/admin/hits", get(admin::hits).delete(admin::clear_hits))
            .route("/admin/clock", get(admin::clock).post(admin::set_clock))
            .route("/admin/tokens", get(admin::tokens))
            .route("/admin/token_ttl", post(admin::token_ttl))
            .route("/admin/token_delay", post(admin::token_delay))
            .route("/admin/state", get(admin::state))
            .method_not_allowed_fallback(errors::method_not_allowed)
            .fallback(errors::fallback)
            .layer(axum::middleware::from_fn_with_state(self.clone(), gate::gate))
            .with_state(self.clone())
    }

    /// Releases hanging requests and delayed token answers (part of shutting down).
    pub fn stop(&self) {
        self.inner.stop.cancel();
    }

    fn real_ms(&self) -> i64 {
        self.inner.real.now_ms()
    }

    fn tokens(&self) -> MutexGuard<'_, oauth::TokenBook> {
        lock(&self.inner.tokens)
    }

    fn quota(&self) -> MutexGuard<'_, quota::Ledger> {
        lock(&self.inner.quota)
    }

    fn faults(&self) -> MutexGuard<'_, gate::Faults> {
        lock(&self.inner.faults)
    }

    fn hits(&self) -> MutexGuard<'_, gate::HitLog> {
        lock(&self.inner.hits)
    }
}

/// A simulator serving on a local port, for tests.
#[derive(Debug)]
pub struct SimHandle {
    /// Where it listens, e.g. `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The shared state, for direct inspection.
    pub sim: Simulator,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// Stops serving: hanging requests are released, then open connections get a few seconds
    /// to finish before the server task is dropped.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.sim.stop();
        let abort = self.task.abort_handle();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.task).await.is_err() {
            warn!("simulator did not stop in time, aborting it");
            abort.abort();
        }
    }
}

/// Builds a simulator on the system clock, binds `listen` (port 0 picks a free port) and serves
/// it in a tokio task.
pub async fn spawn(opts: SimOptions, listen: SocketAddr) -> anyhow::Result<SimHandle> {
    let sim = Simulator::new(opts, crate::clock::system());
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding simulator to {listen}"))?;
    let addr = listener.local_addr().context("reading the simulator's local address")?;
    let shutdown = CancellationToken::new();
    let router = sim.router();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await;
        if let Err(err) = served {
            warn!(error = %err, "simulator server stopped with an error");
        }
    });
    Ok(SimHandle { base_url: format!("http://{addr}"), sim, shutdown, task })
}

/// Serves a simulator on `listen` until `shutdown` is cancelled (the `simulate` command).
/// Logs the base URL and the credentials a client needs.
pub async fn serve(opts: SimOptions, listen: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<()> {
    let sim = Simulator::new(opts, crate::clock::system());
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding simulator to {listen}"))?;
    let addr = listener.local_addr().context("reading the simulator's local address")?;
    let opts = sim.options();
    info!(
        base_url = %format!("http://{addr}"),
        api_key = %opts.api_key,
        client_id = %opts.client_id,
        client_secret = %opts.client_secret,
        username = %opts.username,
        password = %opts.password,
        plan = %opts.plan,
        systems = opts.systems,
        speed = opts.speed,
        "Enlighten simulator listening (authorize at /oauth/authorize, tokens at /oauth/token, API under /api/v4)"
    );
    let stopper = sim.clone();
    let watch = shutdown.clone();
    tokio::spawn(async move {
        watch.cancelled().await;
        stopper.stop();
    });
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("serving the Enlighten simulator")?;
    info!("Enlighten simulator stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn plans_parse_and_print() {
        assert_eq!("WATT".parse::<SimPlan>(), Ok(SimPlan::Watt));
        assert_eq!(" partner ".parse::<SimPlan>(), Ok(SimPlan::Partner));
        assert!("gigawatt".parse::<SimPlan>().is_err());
        assert_eq!(SimPlan::Kilowatt.to_string(), "Kilowatt");
        assert_eq!((SimPlan::Megawatt.per_minute(), SimPlan::Megawatt.per_month()), (100, 300_000));
        assert!(!SimPlan::Watt.allows_device_level());
    }

    #[test]
    fn sim_clock_follows_speed_and_offset_continuously() {
        let real = ManualClock::new(1_750_000_000_000);
        let opts = SimOptions { speed: 60.0, offset_secs: 3_600, ..SimOptions::default() };
        let sim = Simulator::new(opts, real.clone());
        assert_eq!(sim.now_secs(), 1_750_003_600);
        real.advance_ms(10_000);
        assert_eq!(sim.now_secs(), 1_750_004_200, "10 real seconds at 60x");
        sim.adjust_clock(Some(1.0), 0);
        assert_eq!(sim.now_secs(), 1_750_004_200, "no jump when the speed changes");
        real.advance_ms(5_000);
        assert_eq!(sim.now_secs(), 1_750_004_205);
        sim.adjust_clock(None, 86_400);
        assert_eq!(sim.now_secs(), 1_750_090_605);
        assert!(!format!("{:?}", sim.options()).contains("demo-password"));
    }

    #[test]
    fn a_thousand_systems_stay_cheap() {
        let real = ManualClock::new(1_750_000_000_000);
        let sim = Simulator::new(SimOptions { systems: 1_000, ..SimOptions::default() }, real);
        let now = sim.now_secs();
        let started = std::time::Instant::now();
        let total: i64 = sim.fleet().systems().iter().map(|s| s.snapshot(now).energy_lifetime_wh).sum();
        assert!(total > 1_000 * 1_000_000);
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    }
}
