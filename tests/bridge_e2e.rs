//! The whole bridge in-process (`app::start`) on the simulator's sped-up clock: the simulator over
//! real loopback HTTP, a real Mosquitto, and a test client reading what the broker carries. A
//! simulated day passes in seconds, so the quota spread, token lives, back-offs, local midnights
//! and interval back-fills are seen end to end.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::Tz;
use common::broker::{Broker, Probe, retained};
use common::*;
use enphase_mqtt::app::{self, Running};
use enphase_mqtt::clock::{Clock, SharedClock, SystemClock};
use enphase_mqtt::config::{self, AuthFlow, Config};
use enphase_mqtt::demo::SimulatedClock;
use enphase_mqtt::enlighten::EnlightenClient;
use enphase_mqtt::simulator::model::SystemKind;
use enphase_mqtt::simulator::{Fleet, SimHandle, SimOptions, SimPlan, Simulator};
use serde_json::{Value, json};

/// Micro-only, Santa Rosa (America/Los_Angeles), ethernet.
const A: u64 = 4_210_001;
/// Metered, Manly (Australia/Sydney), wifi.
const B: u64 = 4_210_002;
/// Battery, Freiburg (Europe/Berlin), wifi.
const C: u64 = 4_210_003;
/// Real-time bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(30);
const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

// ---------------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------------

/// How the rig logs in before the bridge starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Login {
    /// Authorization code (every plan; the only way for Watt apps).
    Code,
    /// The password grant (the simulator allows it for partner apps).
    Password,
}

/// The simulator, a broker, a state folder and a parsed config pointing at both.
struct Rig {
    sim: SimHandle,
    opts: SimOptions,
    broker: Broker,
    config: Config,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn new(opts: SimOptions, login: Login) -> Self {
        let plan = opts.plan.to_string().to_lowercase();
        Self::with_config_plan(opts, login, &plan).await
    }

    /// A rig whose bridge believes the app is on `plan`, whatever the simulator enforces.
    async fn with_config_plan(opts: SimOptions, login: Login, plan: &str) -> Self {
        init_logging();
        let sim = sim(opts.clone()).await;
        let broker = Broker::start();
        let dir = tempfile::tempdir().unwrap();
        let auth = match login {
            Login::Code => "    flow: authorization_code\n".to_string(),
            Login::Password => {
                format!(
                    "    flow: password\n    username: \"{}\"\n    password: \"{}\"\n",
                    opts.username, opts.password
                )
            }
        };
        let yaml = format!(
            "enphase:\n  api_key: {}\n  client_id: {}\n  client_secret: {}\n  plan: {}\n  base_url: {}\n  \
             request_timeout_secs: 5\n  min_poll_interval_secs: 1\n  auth:\n{auth}\
             mqtt:\n  host: 127.0.0.1\n  port: {}\n  keep_alive: 5\nstate_dir: {}\n",
            opts.api_key,
            opts.client_id,
            opts.client_secret,
            plan,
            sim.base_url,
            broker.port,
            dir.path().join("state").display()
        );
        let config = config::parse(&yaml, &|_| None).unwrap_or_else(|e| panic!("test config: {e}\n{yaml}"));
        let rig = Self { sim, opts, broker, config, _dir: dir };
        match login {
            Login::Code => rig.login_with_code().await,
            Login::Password => {
                let api = rig.client();
                let auth = &rig.config.enphase.auth;
                let resp = api.tokens().oauth().password(&auth.username, &auth.password).await.expect("password grant");
                api.tokens().store_new(resp, AuthFlow::Password).await.unwrap();
            }
        }
        rig
    }

    fn clock(&self) -> SharedClock {
        Arc::new(SimulatedClock(self.sim.sim.clone()))
    }

    /// A client on the rig's state folder, as `enphase-mqtt auth …` would build one.
    fn client(&self) -> EnlightenClient {
        EnlightenClient::from_config(&self.config.enphase, &self.config.state_dir, self.clock()).unwrap()
    }

    /// The homeowner approves the app in the simulator; the code is exchanged and the tokens
    /// stored (what `auth url` + `auth code` do).
    async fn login_with_code(&self) {
        let redirect = "https://api.enphaseenergy.com/oauth/redirect_uri";
        let url = url::Url::parse_with_params(
            &format!("{}/oauth/authorize", self.sim.base_url),
            &[("response_type", "code"), ("client_id", &self.opts.client_id), ("redirect_uri", redirect)],
        )
        .unwrap();
        let resp = http().get(url).send().await.unwrap();
        assert_eq!(resp.status(), 302, "the simulator approves and redirects");
        let location = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
        let code = location.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
        let api = self.client();
        let tokens = api.tokens().oauth().exchange_code(&code, redirect).await.expect("code exchange");
        api.tokens().store_new(tokens, AuthFlow::AuthorizationCode).await.unwrap();
    }

    async fn start(&self) -> Running {
        tokio::time::timeout(WAIT, app::start(&self.config, self.clock()))
            .await
            .expect("the bridge starts in time")
            .expect("the bridge starts")
    }

    /// Simulated now, epoch seconds.
    fn now(&self) -> i64 {
        self.sim.sim.now_secs()
    }

    fn tz(&self, id: u64) -> Tz {
        zone(self.sim.sim.fleet().get(id).expect("a simulated system").timezone())
    }

    /// Waits (in real time, at most `limit`) until simulated time reaches `at`.
    async fn run_until(&self, at: i64, limit: Duration) {
        let started = Instant::now();
        while self.now() < at {
            assert!(
                started.elapsed() < limit,
                "simulated time did not reach {} within {limit:?} (now {})",
                iso(at),
                iso(self.now())
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts the bridge in the evening (`start` of the simulator should be after sunset in Santa
    /// Rosa, so that the start-up read of the day's intervals sees a whole day of production),
    /// waits for the start-up reads to settle, then moves simulated time on to `hour`:00 the next
    /// morning there and presses Refresh to wake the poller, whose sleep was planned on the old
    /// time. (A bridge started mid-morning learns a truncated day: see
    /// `a_bridge_started_mid_morning_keeps_polling_through_the_afternoon`.)
    async fn start_then_skip_to_morning(&self, rec: &Recorder, hour: u32) -> Running {
        let running = self.start().await;
        self.settle().await;
        let now = self.now();
        let offset = next_local_hour(self.tz(A), hour, now) - now;
        admin_post(&self.sim, "/admin/clock", json!({ "offset_secs": offset })).await;
        rec.publish("enphase/bridge/request/refresh", "").await;
        running
    }

    /// Waits until the start-up reads are done: the day's intervals were read and no hit came
    /// for half a second.
    async fn settle(&self) {
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let hits = self.hits().await;
            let started = hits.iter().any(|h| h.path.ends_with("/production_micro") && h.status.is_some());
            if started && hits.len() == seen {
                return;
            }
            seen = hits.len();
            assert!(Instant::now() < deadline, "the start-up reads did not settle: {hits:?}");
        }
    }

    /// Waits until `done` holds for the hits so far and no hit came for a second.
    async fn settle_when(&self, done: impl Fn(&[Hit]) -> bool) {
        let deadline = Instant::now() + WAIT;
        let mut seen = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(1000)).await;
            let hits = self.hits().await;
            if done(&hits) && hits.len() == seen {
                return;
            }
            seen = hits.len();
            assert!(Instant::now() < deadline, "the reads did not settle: {hits:?}");
        }
    }

    async fn hits(&self) -> Vec<Hit> {
        hits(&self.sim).await.iter().map(Hit::from).collect()
    }

    async fn clock_speed(&self, speed: f64) {
        admin_post(&self.sim, "/admin/clock", json!({ "speed": speed })).await;
    }
}

/// Logs to stderr only when asked (`ENPHASE_MQTT_LOG=debug cargo test --test bridge_e2e`).
fn init_logging() {
    if std::env::var_os("ENPHASE_MQTT_LOG").is_some() {
        app::init_logging();
    }
}

/// One entry of the simulator's hit log.
#[derive(Debug, Clone)]
struct Hit {
    /// Simulated epoch seconds at arrival.
    at: i64,
    path: String,
    status: Option<u64>,
    grant: Option<String>,
}

impl From<&Value> for Hit {
    fn from(v: &Value) -> Self {
        Hit {
            at: v["at"].as_i64().expect("at"),
            path: v["path"].as_str().unwrap_or_default().to_string(),
            status: v["status"].as_u64(),
            grant: v["grant"].as_str().map(str::to_string),
        }
    }
}

impl Hit {
    fn is_api(&self) -> bool {
        self.path.starts_with("/api/v4/")
    }

    fn is_token(&self) -> bool {
        self.path == "/oauth/token"
    }

    /// The system a `/api/v4/systems/{id}/…` path is about.
    fn system(&self) -> Option<u64> {
        self.path.strip_prefix("/api/v4/systems/")?.split('/').next()?.parse().ok()
    }

    /// A read of current power (what the scheduler keeps to daylight).
    fn is_power_read(&self) -> bool {
        self.system().is_some() && (self.path.ends_with("/summary") || self.path.ends_with("/latest_telemetry"))
    }
}

/// One message the test client saw, stamped with the simulated time it arrived.
#[derive(Debug, Clone)]
struct Msg {
    at: i64,
    topic: String,
    payload: String,
    retain: bool,
}

impl Msg {
    fn json(&self) -> Value {
        serde_json::from_str(&self.payload)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {}", self.topic, self.payload))
    }
}

/// Records everything the broker delivers on `filters` from the moment it is built.
struct Recorder {
    msgs: Arc<Mutex<Vec<Msg>>>,
    client: rumqttc::AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start(port: u16, filters: &[&str], sim: Simulator) -> Self {
        let mut probe = Probe::connect(port, filters).await;
        let client = probe.client.clone();
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let sink = msgs.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Some((topic, payload, retain)) = probe.next(Duration::from_secs(1)).await {
                    sink.lock().unwrap().push(Msg { at: sim.now_secs(), topic, payload, retain });
                }
            }
        });
        Self { msgs, client, task }
    }

    fn all(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    fn count(&self) -> usize {
        self.msgs.lock().unwrap().len()
    }

    /// Non-empty messages on `topic`, in arrival order.
    fn on(&self, topic: &str) -> Vec<Msg> {
        self.all().into_iter().filter(|m| m.topic == topic && !m.payload.is_empty()).collect()
    }

    /// Waits until `pred` holds over the messages so far; panics after `limit`.
    async fn wait_for(&self, what: &str, limit: Duration, pred: impl Fn(&[Msg]) -> bool) {
        let deadline = Instant::now() + limit;
        loop {
            if pred(&self.msgs.lock().unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        self.client.publish(topic, rumqttc::QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// States of system `id` received so far (after `from` messages), as JSON.
fn states(msgs: &[Msg], id: u64) -> Vec<(i64, Value)> {
    let topic = format!("enphase/{id}/state");
    msgs.iter().filter(|m| m.topic == topic && !m.payload.is_empty()).map(|m| (m.at, m.json())).collect()
}

fn iso(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).map_or(secs.to_string(), |t| t.to_rfc3339())
}

/// Local wall time of `secs` in `tz`, for messages.
fn local(tz: Tz, secs: i64) -> String {
    DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string()
}

fn local_date(tz: Tz, secs: i64) -> NaiveDate {
    DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&tz).date_naive()
}

/// Parses an ISO 8601 time with offset to epoch seconds.
fn epoch(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text:?}: {e}")).timestamp()
}

/// The first instant at or after `after` whose local time in `tz` is `hour`:00.
fn next_local_hour(tz: Tz, hour: u32, after: i64) -> i64 {
    let mut date = local_date(tz, after);
    loop {
        let t = tz
            .from_local_datetime(&date.and_hms_opt(hour, 0, 0).unwrap())
            .earliest()
            .map(|t| t.timestamp())
            .unwrap_or(after);
        if t >= after {
            return t;
        }
        date = date.succ_opt().unwrap();
    }
}

/// Simulator options whose clock starts at `start` (epoch seconds) and runs at `speed`.
fn starting_at(mut opts: SimOptions, start: i64, speed: f64) -> SimOptions {
    opts.offset_secs = start - SystemClock.now_secs();
    opts.speed = speed;
    opts
}

/// Real now, epoch seconds.
fn real_now() -> i64 {
    SystemClock.now_secs()
}

/// The time zone of simulated system `id` (seed 1), known before a simulator exists.
fn tz_of(id: u64) -> Tz {
    let index = (id - A) as usize;
    zone(
        Fleet::generate(index + 1, SimOptions::default().seed, real_now())
            .get(id)
            .expect("a simulated system")
            .timezone(),
    )
}

/// The zone of this name as a second tz library reads it (the bridge and the simulator use another).
fn zone(name: &str) -> Tz {
    name.parse().unwrap_or_else(|e| panic!("time zone {name}: {e}"))
}

// ---------------------------------------------------------------------------------------------
// 1. The budget holds on a sped-up clock
// ---------------------------------------------------------------------------------------------

/// Asserts that no problem was found, listing them all (and `context`) when some were.
fn assert_none(problems: &[String], context: &str) {
    assert!(problems.is_empty(), "{} problem(s):\n- {}\n\n{context}", problems.len(), problems.join("\n- "));
}

/// Watt plan, three systems, a simulated day at 4000×: no 429, never more than 10 hits in any
/// 60 seconds, about a thirtieth of the month's 1,000 hits a day, no power reads in the dark, the
/// systems really polled, and none of them shown offline (their gateways upload every 15 min).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watt_budget_holds_over_a_simulated_day_at_4000x() {
    // The 1st of next month, 21:00 UTC: a whole month to spread 1,000 hits over.
    let start = next_month_start(real_now()) + 21 * HOUR;
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Watt, ..SimOptions::default() }, start, 4000.0);
    let rig = Rig::new(opts, Login::Code).await;
    let topics = ["enphase/+/state", "enphase/+/availability", "enphase/+/inverters/+/state"];
    let rec = Recorder::start(rig.broker.port, &topics, rig.sim.sim.clone()).await;
    let t0 = rig.now();
    let running = rig.start().await;
    rig.run_until(t0 + DAY + 2 * HOUR, Duration::from_secs(60)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let days = (hits.last().unwrap().at - t0) as f64 / DAY as f64;

    // What every system was sent, in its local time, for the failure message.
    let mut log = String::new();
    for h in hits.iter().filter(|h| h.system().is_none()) {
        log += &format!("{} {} {:?}\n", iso(h.at), h.path, h.status);
    }
    for id in [A, B, C] {
        let tz = rig.tz(id);
        for h in hits.iter().filter(|h| h.system() == Some(id)) {
            log += &format!("{id} {} {} {:?}\n", local(tz, h.at), h.path.rsplit('/').next().unwrap(), h.status);
        }
    }
    let mut problems = Vec::new();

    // No 429, nothing refused or failed.
    let bad: Vec<String> =
        hits.iter().filter(|h| h.status != Some(200)).map(|h| format!("{} {:?}", h.path, h.status)).collect();
    if !bad.is_empty() {
        problems.push(format!("hits not answered 200: {bad:?}"));
    }
    // Never more than the plan's 10 in any 60 simulated seconds (sliding, by arrival).
    let busiest = busiest_minute(&hits.iter().map(|h| h.at).collect::<Vec<_>>());
    if busiest > 10 {
        problems.push(format!("{busiest} hits in one 60-second window"));
    }
    // The month's 1,000 spread over ~30 days is 33 a day; allow 35 % (45 a day) besides the
    // start-up reads (system list, device lists, a first power read, the day's intervals and
    // totals: the first half hour).
    let startup = hits.iter().filter(|h| h.at < t0 + 30 * MINUTE).count();
    let first_day = hits.iter().filter(|h| h.at < t0 + DAY).count() - startup;
    let per_day = (hits.len() - startup) as f64 / days;
    eprintln!(
        "watt: {} hits over {days:.2} simulated days: {startup} at start-up, then {first_day} in the rest of the first \
         24 h ({per_day:.1}/day overall); busiest minute {busiest}",
        hits.len()
    );
    if first_day > 45 {
        problems
            .push(format!("{first_day} hits in the first simulated day after {startup} start-up hits (at most 45)"));
    }
    if per_day > 45.0 {
        problems.push(format!("{per_day:.1} hits a simulated day after start-up (at most 45)"));
    }

    let msgs = rec.all();
    for id in [A, B, C] {
        let sys = rig.sim.sim.fleet().get(id).unwrap();
        let tz = zone(sys.timezone());
        let reads: Vec<&Hit> = hits.iter().filter(|h| h.system() == Some(id) && h.is_power_read()).collect();
        // Power reads keep to daylight: none while the model's production is nil for 90 minutes
        // on either side (deep night in the system's own time zone), but for the start-up read.
        let dark: Vec<String> = reads
            .iter()
            .filter(|h| h.at >= t0 + 30 * MINUTE)
            .filter(|h| sys.micro_buckets(h.at - 90 * MINUTE, h.at + 90 * MINUTE).iter().all(|b| b.enwh == 0))
            .map(|h| local(tz, h.at))
            .collect();
        if !dark.is_empty() {
            problems.push(format!("system {id} read power in the dark at {dark:?}"));
        }
        // Not idle: a Watt share still reads every system several times a day, all through its
        // daylight: never three producing hours (by the model) without a power read.
        if reads.len() < 3 {
            problems.push(format!("system {id}: only {} power reads in {days:.2} days", reads.len()));
        }
        let mut bounds = vec![t0 + 30 * MINUTE];
        bounds.extend(reads.iter().map(|h| h.at).filter(|at| *at > t0 + 30 * MINUTE));
        bounds.push(hits.last().unwrap().at);
        for w in bounds.windows(2) {
            let lit = sys.micro_buckets(w[0], w[1]).iter().filter(|b| b.enwh > 0).count() as i64 * 5 * MINUTE;
            if lit > 3 * HOUR {
                problems.push(format!(
                    "system {id}: no power read from {} to {}, {} h of production unseen",
                    local(tz, w[0]),
                    local(tz, w[1]),
                    lit / HOUR
                ));
            }
        }
        if states(&msgs, id).len() < 2 {
            problems.push(format!("system {id}: {} states on MQTT", states(&msgs, id).len()));
        }
        // The microinverters are known on Watt too (read at start, then weekly after dusk).
        let prefix = format!("enphase/{id}/inverters/");
        let micros: BTreeSet<&str> =
            msgs.iter().filter(|m| m.topic.starts_with(&prefix)).map(|m| m.topic.as_str()).collect();
        if micros.len() != sys.micros().len() {
            problems.push(format!("system {id}: {} of {} microinverters on MQTT", micros.len(), sys.micros().len()));
        }
        // Every gateway uploads every 15 minutes: no system is ever stale when read.
        let topic = format!("enphase/{id}/availability");
        let offline: Vec<String> = msgs
            .iter()
            .filter(|m| m.topic == topic && m.payload == "offline")
            .map(|m| {
                let state = states(&msgs, id).into_iter().rfind(|(at, _)| *at <= m.at).map(|(_, s)| s);
                let report = state.and_then(|s| s["last_report_at"].as_str().map(str::to_string)).unwrap_or_default();
                format!("{} (state's last_report_at {report})", local(tz, m.at))
            })
            .collect();
        if !offline.is_empty() {
            problems.push(format!("system {id} was published offline at {offline:?}"));
        }
    }
    let power_reads = hits.iter().filter(|h| h.is_power_read()).count();
    if power_reads < 15 {
        problems.push(format!("only {power_reads} power reads for the fleet"));
    }
    assert_none(&problems, &log);
}

// ---------------------------------------------------------------------------------------------
// 2. Tokens expire and are refreshed mid-run
// ---------------------------------------------------------------------------------------------

/// Access tokens living 31 simulated minutes, over about ten lives: the bridge refreshes before
/// using a token that is about to expire, no call is answered 401, and states keep coming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_expire_and_are_refreshed_mid_run_without_a_401() {
    // A little longer than the gap between two polls, so that some calls find the token in its
    // last tenth of life (refresh ahead of expiry) and others find it expired (refresh first).
    const TTL: i64 = 31 * MINUTE;
    let start = next_local_hour(tz_of(A), 18, real_now() + HOUR);
    let opts = starting_at(
        SimOptions { systems: 1, plan: SimPlan::Partner, access_ttl_secs: TTL, ..SimOptions::default() },
        start,
        1800.0,
    );
    let rig = Rig::new(opts, Login::Password).await;
    let rec = Recorder::start(rig.broker.port, &["enphase/#"], rig.sim.sim.clone()).await;
    let running = rig.start_then_skip_to_morning(&rec, 9).await;
    let t0 = rig.now();
    rig.run_until(t0 + 10 * TTL, Duration::from_secs(40)).await;
    let hits = rig.hits().await;
    let t_end = rig.now();
    running.stop().await;

    let log: String = hits.iter().map(|h| format!("{} {} {:?} {:?}\n", iso(h.at), h.path, h.status, h.grant)).collect();
    assert!(hits.iter().all(|h| h.status != Some(401)), "a call was answered 401:\n{log}");
    let grants: Vec<&Hit> = hits.iter().filter(|h| h.is_token()).collect();
    assert!(grants.iter().all(|h| h.status == Some(200)), "every token call succeeded:\n{log}");
    assert_eq!(grants[0].grant.as_deref(), Some("password"), "{log}");
    let refreshes: Vec<&&Hit> = grants.iter().filter(|h| h.grant.as_deref() == Some("refresh_token")).collect();
    assert!(refreshes.len() >= 6, "only {} refreshes over ten token lives:\n{log}", refreshes.len());
    assert_eq!(refreshes.len(), grants.len() - 1, "no second password login:\n{log}");
    // Every API call was made with a live token: the newest pair was issued less than TTL ago.
    for h in hits.iter().filter(|h| h.is_api()) {
        let issued = grants.iter().filter(|g| g.at <= h.at).map(|g| g.at).max().expect("a token before any call");
        assert!(h.at < issued + TTL, "{} at {} used a token issued at {}:\n{log}", h.path, iso(h.at), iso(issued));
    }
    // Refreshed ahead of expiry: at least some pairs were replaced while still alive.
    let ahead = grants.windows(2).filter(|w| w[1].at < w[0].at + TTL).count();
    eprintln!(
        "tokens: {} refreshes over {} simulated minutes, {ahead} before the old token expired, {} API calls",
        refreshes.len(),
        (t_end - t0) / MINUTE,
        hits.iter().filter(|h| h.is_api()).count()
    );
    assert!(ahead >= 3, "only {ahead} refreshes came before the old token expired:\n{log}");

    // States kept arriving through every life, and the bridge never reported a lost login.
    let msgs = rec.all();
    let reports: BTreeSet<String> =
        states(&msgs, A).iter().filter_map(|(_, s)| s["last_report_at"].as_str().map(str::to_string)).collect();
    assert!(reports.len() >= 8, "only {} distinct uploads published: {reports:?}", reports.len());
    let last = states(&msgs, A).last().map(|(at, _)| *at).unwrap();
    assert!(last > t_end - 2 * TTL, "states stopped at {} (run ended {})", iso(last), iso(t_end));
    for info in msgs.iter().filter(|m| m.topic == "enphase/bridge/info") {
        assert_eq!(info.json()["authorization_ok"], true, "{}", info.payload);
    }
}

// ---------------------------------------------------------------------------------------------
// 3. A refused refresh: the problem entity, then recovery without a restart
// ---------------------------------------------------------------------------------------------

/// Evaluates the one template shape the authorization binary sensor uses:
/// `{{ ('X' if value_json.authorization_ok else 'Y') if value_json.authorization_ok is defined else none }}`.
fn authorization_template(template: &str, ok: bool) -> String {
    let inner = template
        .split_once("('")
        .and_then(|(_, rest)| rest.split_once("')"))
        .map(|(inner, _)| inner)
        .unwrap_or_else(|| panic!("unexpected template {template}"));
    let (when_true, rest) =
        inner.split_once("' if value_json.authorization_ok else '").expect("if/else on authorization_ok");
    assert!(template.contains("value_json.authorization_ok is defined"), "{template}");
    if ok { when_true.to_string() } else { rest.to_string() }
}

/// Watt plan, code flow: the homeowner revokes the app; a Refresh press makes the bridge find out
/// (`authorization_ok: false`, the problem sensor ON, no retry of the dead refresh token and no
/// hits spent while waiting); new tokens stored by the code flow bring it back without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_refresh_raises_the_problem_and_new_tokens_repair_it_without_a_restart() {
    let start = next_local_hour(tz_of(A), 10, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 2, plan: SimPlan::Watt, ..SimOptions::default() }, start, 60.0);
    let rig = Rig::new(opts, Login::Code).await;
    let rec = Recorder::start(
        rig.broker.port,
        &["enphase/#", "homeassistant/binary_sensor/enphase_bridge/authorization/config"],
        rig.sim.sim.clone(),
    )
    .await;
    let running = rig.start().await;
    let info_ok = |ok: bool| {
        move |msgs: &[Msg]| msgs.iter().any(|m| m.topic == "enphase/bridge/info" && m.json()["authorization_ok"] == ok)
    };
    rec.wait_for("authorization_ok true", WAIT, info_ok(true)).await;
    rec.wait_for("states of both systems", WAIT, |m| !states(m, A).is_empty() && !states(m, B).is_empty()).await;
    rig.settle().await;

    // Home Assistant's problem sensor reads `authorization_ok`: false is ON (a problem).
    let configs = rec.on("homeassistant/binary_sensor/enphase_bridge/authorization/config");
    let config = configs.last().expect("the authorization sensor's discovery config").json();
    assert_eq!(config["state_topic"], "enphase/bridge/info");
    assert_eq!(config["device_class"], "problem");
    let template = config["value_template"].as_str().expect("a value_template");
    assert_eq!(authorization_template(template, false), "ON", "{template}");
    assert_eq!(authorization_template(template, true), "OFF", "{template}");
    for key in ["payload_on", "payload_off"] {
        assert!(config.get(key).is_none_or(|v| v == if key == "payload_on" { "ON" } else { "OFF" }), "{config}");
    }

    // The homeowner revokes the app; the Refresh button polls now and finds out (within a few
    // seconds: a press is answered at once).
    admin_post(&rig.sim, "/admin/revoke", json!({})).await;
    let before_revoke = rig.hits().await.len();
    let seen = rec.count();
    rec.publish("enphase/bridge/request/refresh", "").await;
    rec.wait_for("authorization_ok false", Duration::from_secs(5), move |m| {
        m[seen..].iter().any(|m| m.topic == "enphase/bridge/info" && m.json()["authorization_ok"] == false)
    })
    .await;
    let info = rec.on("enphase/bridge/info").last().unwrap().json();
    assert_eq!(info["authorization_ok"], false, "{info}");
    assert!(info["authorization_error"].as_str().is_some_and(|e| !e.is_empty()), "the reason is given: {info}");
    let tokens: Value =
        serde_json::from_slice(&std::fs::read(rig.config.state_dir.join("tokens.json")).unwrap()).unwrap();
    assert!(tokens["reauth_needed"].is_string(), "the token file says so: {tokens}");
    let after_refusal = rig.hits().await;
    let refused: Vec<&Hit> = after_refusal[before_revoke..].iter().filter(|h| h.is_token()).collect();
    assert_eq!(refused.len(), 1, "one refresh attempt: {refused:?}");
    assert!(matches!(refused[0].status, Some(400 | 401)), "{refused:?}");

    // While authorization is missing, another press and a few simulated minutes spend nothing
    // (the dead refresh token is never tried again).
    rec.publish("enphase/bridge/request/refresh", "").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let quiet = rig.hits().await;
    assert_eq!(
        quiet.len(),
        after_refusal.len(),
        "hits while waiting for a new login: {:?}",
        &quiet[after_refusal.len()..]
    );
    assert!(
        retained(rig.broker.port, &["enphase/bridge/availability"]).await["enphase/bridge/availability"] == "online"
    );

    // The homeowner approves again (`auth url` + `auth code`): the running bridge picks it up.
    let last_states: BTreeMap<u64, String> =
        [A, B].iter().map(|id| (*id, rec.on(&format!("enphase/{id}/state")).last().unwrap().payload.clone())).collect();
    let seen = rec.count();
    // Twenty simulated minutes on (the gateways upload meanwhile), the homeowner approves again.
    admin_post(&rig.sim, "/admin/clock", json!({ "offset_secs": 20 * MINUTE })).await;
    rig.login_with_code().await;
    rec.wait_for("authorization_ok true again", WAIT, move |m| {
        m[seen..].iter().any(|m| m.topic == "enphase/bridge/info" && m.json()["authorization_ok"] == true)
    })
    .await;
    // It polls every system at once (not only the one whose turn came), within the 5 s in which
    // it looks for new tokens.
    let grant_at = Instant::now();
    loop {
        let hits = rig.hits().await;
        let regrant = hits.iter().rposition(|h| h.grant.as_deref() == Some("authorization_code")).unwrap();
        let polled = |id: u64| {
            hits[regrant..].iter().any(|h| h.system() == Some(id) && h.is_power_read() && h.status == Some(200))
        };
        if polled(A) && polled(B) {
            break;
        }
        assert!(
            grant_at.elapsed() < Duration::from_secs(10),
            "not every system was polled after the new login: {:?}",
            &hits[regrant..]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rec.wait_for("fresh states of both systems", WAIT, move |m| {
        [A, B]
            .iter()
            .all(|id| m[seen..].iter().any(|m| m.topic == format!("enphase/{id}/state") && !m.payload.is_empty()))
    })
    .await;
    for id in [A, B] {
        let now = rec.on(&format!("enphase/{id}/state")).pop().unwrap();
        assert_ne!(now.payload, last_states[&id], "system {id}: new readings after the new login");
    }
    // The micro-only site's state comes from `summary`: its upload time moved on.
    let now = rec.on(&format!("enphase/{A}/state")).last().unwrap().json();
    let before: Value = serde_json::from_str(&last_states[&A]).unwrap();
    assert!(
        epoch(now["last_report_at"].as_str().unwrap()) > epoch(before["last_report_at"].as_str().unwrap()),
        "a newer upload after the new login: {before} → {now}"
    );
    let after = rig.hits().await;
    assert!(after[quiet.len()..].iter().any(|h| h.is_api() && h.status == Some(200)), "polling resumed");
    assert!(after.iter().all(|h| h.status != Some(429)));
    running.stop().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Overload pages and 503 bursts
// ---------------------------------------------------------------------------------------------

/// Three HTML "queue full" pages then three 503s: the bridge keeps running and `online`, pauses
/// 2, 4, 8 … simulated minutes (each lengthened at random by up to as much again) between the
/// failed attempts, and publishes fresh states after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_pages_and_503_bursts_back_off_and_recover() {
    let start = next_local_hour(tz_of(A), 18, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Partner, ..SimOptions::default() }, start, 600.0);
    let rig = Rig::new(opts, Login::Password).await;
    let rec = Recorder::start(rig.broker.port, &["enphase/#"], rig.sim.sim.clone()).await;
    let running = rig.start_then_skip_to_morning(&rec, 9).await;
    rec.wait_for("a state from the morning", WAIT, |m| {
        states(m, A).iter().any(|(at, s)| *at >= m[0].at + 12 * HOUR && s["production_power_w"].as_i64() > Some(0))
    })
    .await;
    let before = rig.hits().await.len();
    let morning = rig.now();

    admin_post(&rig.sim, "/admin/faults", json!({ "kind": "html", "count": 3 })).await;
    admin_post(&rig.sim, "/admin/faults", json!({ "kind": "503", "count": 3 })).await;
    let injected_at = rig.now();
    // The burst is used up, then a fresh state is published.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let state = admin_get(&rig.sim, "/admin/state").await;
        if state["faults"]["api"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(Instant::now() < deadline, "the bridge stopped calling: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rec.wait_for("a state with a newer upload after the burst", Duration::from_secs(40), |m| {
        states(m, A).iter().any(|(_, s)| s["last_report_at"].as_str().is_some_and(|t| epoch(t) > morning + HOUR))
    })
    .await;
    let hits = rig.hits().await;
    let msgs = rec.all();
    running.stop().await;

    let log: String = hits[before..].iter().map(|h| format!("{} {} {:?}\n", iso(h.at), h.path, h.status)).collect();
    let burst: Vec<&Hit> = hits[before..].iter().filter(|h| h.is_api()).take(6).collect();
    assert_eq!(burst.len(), 6, "{log}");
    assert!(burst.iter().all(|h| h.status == Some(503)), "{log}");
    assert!(burst[0].at - injected_at <= 30 * MINUTE, "the first failure came with the next upload:\n{log}");
    // Each task backs off on its own: pauses of 2, 4, 8, 16 … simulated minutes between its
    // failed attempts, each lengthened at random by up to as much again (and a few seconds of
    // latency aside), never a tight loop.
    let mut by_endpoint: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for h in &burst {
        by_endpoint.entry(h.path.rsplit('/').next().unwrap()).or_default().push(h.at);
    }
    let power = &by_endpoint["summary"];
    assert!(power.len() >= 3, "the power read failed at least three times in a row:\n{log}");
    for (endpoint, times) in &by_endpoint {
        let gaps: Vec<i64> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let problem = format!("{endpoint}: retried after {gaps:?} s, not 120, 240, 480 …:\n{log}");
        // Arrival times carry some jitter (milliseconds of latency are seconds at 600×); a retry
        // may also come later when another call was due first, but never sooner.
        for (k, gap) in gaps.iter().enumerate() {
            assert!(*gap >= ((2 * MINUTE) << k) * 3 / 4, "{problem}");
        }
        if let Some(first) = gaps.first() {
            assert!(*first < 5 * MINUTE, "the first pause is two to four minutes: {problem}");
        }
        // A retry can also wait for another call that was due first, and the random part differs
        // from pause to pause; over the burst the pauses still grow.
        if gaps.len() >= 3 {
            assert!(gaps[gaps.len() - 1] >= gaps[0] * 3 / 2, "the pauses grow: {problem}");
        }
    }
    // Then polling went on, successfully.
    let after: Vec<&Hit> = hits[before..].iter().filter(|h| h.is_api()).skip(6).collect();
    assert!(after.iter().any(|h| h.status == Some(200) && h.path.ends_with("/summary")), "{log}");
    // The bridge and the system stayed online throughout (until the bridge was stopped).
    for topic in ["enphase/bridge/availability", &format!("enphase/{A}/availability")] {
        let values: Vec<&str> = msgs.iter().filter(|m| m.topic == topic).map(|m| m.payload.as_str()).collect();
        assert!(!values.is_empty() && values.iter().all(|v| *v == "online"), "{topic}: {values:?}");
    }
    let info = rec.on("enphase/bridge/info").last().unwrap().json();
    assert!(info["last_error"].is_string(), "the failure is reported: {info}");
}

// ---------------------------------------------------------------------------------------------
// 5. The daily counter resets at local midnight; lifetime never decreases, across a restart
// ---------------------------------------------------------------------------------------------

/// Every lifetime counter of a state JSON.
const LIFETIMES: [&str; 7] = [
    "production_energy_lifetime_wh",
    "production_meter_energy_wh",
    "consumption_energy_lifetime_wh",
    "grid_import_energy_wh",
    "grid_export_energy_wh",
    "battery_charged_energy_wh",
    "battery_discharged_energy_wh",
];

/// Checks one system's states in order (each stamped with the simulated time it arrived):
/// lifetimes never decrease, and today's energy drops only when the local date changed between
/// the two readings. Problems go to `problems`; returns how many drops were seen.
fn check_counters(tz: Tz, id: u64, states: &[(i64, Value)], problems: &mut Vec<String>) -> usize {
    let mut drops = 0;
    for pair in states.windows(2) {
        let ((t1, s1), (t2, s2)) = (&pair[0], &pair[1]);
        for key in LIFETIMES {
            if let (Some(a), Some(b)) = (s1[key].as_i64(), s2[key].as_i64())
                && b < a
            {
                problems.push(format!(
                    "system {id}: {key} went from {a} to {b} ({} → {})",
                    local(tz, *t1),
                    local(tz, *t2)
                ));
            }
        }
        if let (Some(a), Some(b)) =
            (s1["production_energy_today_wh"].as_i64(), s2["production_energy_today_wh"].as_i64())
            && b < a
        {
            drops += 1;
            if local_date(tz, *t2) <= local_date(tz, *t1) {
                problems.push(format!(
                    "system {id}: production_energy_today_wh dropped from {a} to {b} within local day {} ({} → {})",
                    local_date(tz, *t1),
                    local(tz, *t1),
                    local(tz, *t2)
                ));
            }
        }
    }
    drops
}

/// Twenty simulated hours across Santa Rosa's midnight (and Berlin's and Manly's), then a
/// restart on the same state folder while the simulator runs on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_energy_resets_at_local_midnight_and_lifetime_never_decreases_across_a_restart() {
    let start = next_local_hour(tz_of(A), 13, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Partner, ..SimOptions::default() }, start, 3600.0);
    let rig = Rig::new(opts, Login::Password).await;
    let rec = Recorder::start(rig.broker.port, &["enphase/+/state"], rig.sim.sim.clone()).await;
    let t0 = rig.now();
    let first = rig.start().await;
    // Until 09:00 the next morning in Santa Rosa.
    rig.run_until(next_local_hour(rig.tz(A), 9, t0 + 2 * HOUR), Duration::from_secs(40)).await;
    // Slow down for the restart so that little simulated time passes while it happens.
    rig.clock_speed(60.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    first.stop().await;

    let mut problems = Vec::new();
    let msgs = rec.all();
    let mut last: BTreeMap<u64, (i64, Value)> = BTreeMap::new();
    for id in [A, B, C] {
        let tz = rig.tz(id);
        let got = states(&msgs, id);
        assert!(got.len() >= 5, "system {id}: {} states", got.len());
        let drops = check_counters(tz, id, &got, &mut problems);
        if id == A {
            assert!(drops >= 1, "Santa Rosa's daily counter was reset after its midnight");
            let (at, s) = got.last().unwrap();
            assert_eq!(local_date(tz, *at), local_date(tz, t0).succ_opt().unwrap(), "the run crossed midnight");
            assert!(
                s["production_energy_today_wh"].as_i64().unwrap()
                    < got.iter().filter_map(|(_, s)| s["production_energy_today_wh"].as_i64()).max().unwrap(),
                "the morning's counter is below yesterday's total"
            );
        }
        last.insert(id, got.last().unwrap().clone());
    }

    // The kept totals hold what was last published.
    let totals: Value =
        serde_json::from_slice(&std::fs::read(rig.config.state_dir.join("totals.json")).expect("totals.json exists"))
            .expect("totals.json is JSON");
    for id in [A, B, C] {
        let kept = &totals[id.to_string()];
        let published = &last[&id].1;
        assert_eq!(
            kept["production_lifetime_wh"], published["production_energy_lifetime_wh"],
            "system {id}: kept {kept} vs published {published}"
        );
        assert!(kept["production_lifetime_wh"].as_i64().is_some_and(|wh| wh > 0), "{kept}");
    }

    // A new bridge on the same state folder, the simulator still running.
    let seen = rec.count();
    rig.clock_speed(3600.0).await;
    let second = rig.start().await;
    let t1 = rig.now();
    rec.wait_for("states after the restart", WAIT, move |m| {
        [A, B, C].iter().all(|id| !states(&m[seen..], *id).is_empty())
    })
    .await;
    rig.run_until(t1 + 3 * HOUR, Duration::from_secs(20)).await;
    second.stop().await;
    let msgs = rec.all();
    for id in [A, B, C] {
        let after = states(&msgs[seen..], id);
        let (_, published) = &last[&id];
        let lifetime = after[0].1["production_energy_lifetime_wh"].as_i64();
        let before = published["production_energy_lifetime_wh"].as_i64();
        assert!(lifetime >= before, "system {id}: lifetime {lifetime:?} after the restart, {before:?} before");
        let mut both = vec![last[&id].clone()];
        both.extend(after);
        check_counters(rig.tz(id), id, &both, &mut problems);
    }
    assert_none(&problems, "");
}

// ---------------------------------------------------------------------------------------------
// 6. New intervals, each once, not retained
// ---------------------------------------------------------------------------------------------

/// Twelve simulated hours over three systems: the start-up read, the evening back-fills and the
/// battery reads of every power poll overlap, yet each interval is published once, not
/// retained, with the model's energy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_intervals_are_published_once_each_and_not_retained() {
    let start = next_local_hour(tz_of(A), 15, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Partner, ..SimOptions::default() }, start, 3600.0);
    let rig = Rig::new(opts, Login::Password).await;
    let rec = Recorder::start(rig.broker.port, &["enphase/+/intervals"], rig.sim.sim.clone()).await;
    let t0 = rig.now();
    let running = rig.start().await;
    rig.run_until(t0 + 12 * HOUR, Duration::from_secs(40)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let msgs = rec.all();
    assert!(msgs.iter().all(|m| !m.retain), "delivered live, not retained");
    assert!(retained(rig.broker.port, &["enphase/+/intervals"]).await.is_empty(), "the broker keeps none");

    let mut seen: BTreeSet<(u64, String, i64)> = BTreeSet::new();
    let mut kinds: BTreeMap<(u64, String), Vec<i64>> = BTreeMap::new();
    for m in &msgs {
        let id: u64 = m.topic.split('/').nth(1).unwrap().parse().unwrap();
        let i = m.json();
        assert_eq!(i["system_id"], id, "{}", m.payload);
        let kind = i["kind"].as_str().expect("kind").to_string();
        assert!(
            ["production", "consumption", "battery_charge", "battery_discharge", "micro_production"]
                .contains(&kind.as_str()),
            "{kind}"
        );
        let end = epoch(i["end_at"].as_str().expect("end_at"));
        assert_eq!(i["end_at_epoch"], end);
        let (wh, w, dur) =
            (i["energy_wh"].as_i64().unwrap(), i["power_w"].as_i64().unwrap(), i["duration_s"].as_i64().unwrap());
        assert!(wh >= 0 && w == wh * 3600 / dur, "{}", m.payload);
        assert!(seen.insert((id, kind.clone(), end)), "published twice: {}", m.payload);
        let sys = rig.sim.sim.fleet().get(id).unwrap();
        if kind == "production" {
            let model = sys.micro_buckets(end - 300, end);
            assert_eq!(model.len(), 1);
            assert_eq!(model[0].enwh, wh, "system {id} at {}: the model's energy", iso(end));
        }
        if kind == "micro_production" {
            // The partner plan has device-level data: one message per bucket, every micro in it.
            let micros = i["micros"].as_object().expect("micros");
            let serials: BTreeSet<&str> = sys.micros().iter().map(|m| m.serial.as_str()).collect();
            assert!(!micros.is_empty() && micros.keys().all(|k| serials.contains(k.as_str())), "{}", m.payload);
            let sum: i64 = micros.values().map(|v| v["energy_wh"].as_i64().unwrap()).sum();
            assert_eq!(sum, wh, "the bucket's energy is its micros' sum: {}", m.payload);
            let model = sys.micro_buckets(end - 300, end)[0].enwh;
            assert!((sum - model).abs() <= micros.len() as i64, "{sum} Wh, the model {model} Wh: {}", m.payload);
        }
        kinds.entry((id, kind)).or_default().push(end);
    }
    for id in [A, B, C] {
        let reads =
            hits.iter().filter(|h| h.system() == Some(id) && h.path.ends_with("/telemetry/production_micro")).count();
        // Santa Rosa's and Manly's evenings fall in the run (Freiburg's does not: its battery
        // reads overlap instead).
        if id != C {
            assert!(reads >= 2, "system {id}: {reads} interval reads (the start-up one and an evening one)");
        }
        let ends =
            kinds.get(&(id, "production".to_string())).unwrap_or_else(|| panic!("no production intervals of {id}"));
        assert!(ends.windows(2).all(|w| w[1] == w[0] + 300), "system {id}: production intervals in order, no gap");
    }
    eprintln!(
        "intervals: {} published: {:?}",
        msgs.len(),
        kinds.iter().map(|((id, kind), ends)| format!("{id}/{kind}: {}", ends.len())).collect::<Vec<_>>()
    );
    // The battery's intervals come with each power poll, overlapping the previous read.
    let battery_reads = hits.iter().filter(|h| h.system() == Some(C) && h.path.ends_with("/telemetry/battery")).count();
    assert!(battery_reads >= 3, "{battery_reads} battery reads");
    assert!(kinds.contains_key(&(C, "battery_charge".to_string())), "{:?}", kinds.keys());
    assert!(kinds.contains_key(&(B, "consumption".to_string())), "{:?}", kinds.keys());
    for id in [A, B, C] {
        assert!(kinds.contains_key(&(id, "micro_production".to_string())), "{id}: {:?}", kinds.keys());
        let pages = hits.iter().filter(|h| h.system() == Some(id) && h.path.ends_with("/devices/micros/telemetry"));
        assert!(pages.clone().all(|h| h.status == Some(200)), "device-level reads answered");
    }
}

/// An app on the Watt plan configured as Kilowatt: the per-micro telemetry is refused with a 401,
/// the token is refreshed and the call retried once, a second 401 ends it for good (said in
/// `bridge/info`), and everything else goes on being read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_device_level_data_stops_those_calls_and_nothing_else() {
    let start = next_local_hour(tz_of(A), 15, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Watt, ..SimOptions::default() }, start, 3600.0);
    let rig = Rig::with_config_plan(opts, Login::Code, "kilowatt").await;
    let rec = Recorder::start(rig.broker.port, &["enphase/#"], rig.sim.sim.clone()).await;
    let t0 = rig.now();
    let running = rig.start().await;
    rig.run_until(t0 + 30 * HOUR, Duration::from_secs(60)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let log: String = hits.iter().map(|h| format!("{} {} {:?}\n", iso(h.at), h.path, h.status)).collect();
    let device_level: Vec<&Hit> = hits.iter().filter(|h| h.path.contains("/devices/micros")).collect();
    assert_eq!(device_level.len(), 2, "asked, refused, asked again with a new token, never again:\n{log}");
    assert!(device_level.iter().all(|h| h.status == Some(401)), "{log}");
    let refresh = hits.iter().position(|h| h.is_token() && h.at >= device_level[0].at).expect("a refresh");
    assert!(hits[refresh].at <= device_level[1].at, "the token was refreshed between the two:\n{log}");
    let others: Vec<&Hit> = hits.iter().filter(|h| h.is_api() && !h.path.contains("/devices/micros")).collect();
    assert!(others.iter().all(|h| h.status == Some(200)), "nothing else refused:\n{log}");
    let inverter_reads = others.iter().filter(|h| h.path.contains("inverters_summary")).count();
    assert!(inverter_reads >= 2, "the inverters summary is still read ({inverter_reads}):\n{log}");
    let power_after = others.iter().filter(|h| h.is_power_read() && h.at > device_level[1].at + DAY / 2).count();
    assert!(power_after >= 3, "power reads went on the next day ({power_after}):\n{log}");
    let info = rec.on("enphase/bridge/info").last().unwrap().json();
    assert_eq!(info["denied_endpoints"], json!(["/systems/{id}/devices/micros/telemetry"]), "{info}");
}

// ---------------------------------------------------------------------------------------------
// 7. A start in the middle of the day
// ---------------------------------------------------------------------------------------------

/// A bridge started at 09:00 learns its daylight window from a day still in progress: it must not
/// take 09:00 for the evening. Partner plan, one system: power reads at least hourly until noon,
/// and no "after dusk" interval read in broad daylight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_started_mid_morning_keeps_polling_through_the_afternoon() {
    // Twelve minutes after the gateway's last upload before 09:00: the start-up reads see data
    // that ends then (at 1500× they take a simulated minute or two, well before the next upload).
    let nine = next_local_hour(tz_of(A), 9, real_now() + HOUR);
    let upload = Fleet::generate(1, SimOptions::default().seed, nine).get(A).unwrap().last_upload_at(nine);
    let start = upload + 12 * MINUTE;
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Partner, ..SimOptions::default() }, start, 1500.0);
    let rig = Rig::new(opts, Login::Password).await;
    let t0 = rig.now();
    let running = rig.start().await;
    let tz = rig.tz(A);
    let end = next_local_hour(tz, 12, t0);
    rig.run_until(end, Duration::from_secs(20)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let log: String = hits.iter().map(|h| format!("{} {} {:?}\n", local(tz, h.at), h.path, h.status)).collect();
    let mut reads: Vec<i64> = hits.iter().filter(|h| h.is_power_read()).map(|h| h.at).collect();
    reads.push(end);
    let longest = reads.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(longest <= HOUR, "{} minutes without a power read between 09:00 and noon:\n{log}", longest / MINUTE);
    let backfills = hits.iter().filter(|h| h.path.ends_with("/production_micro") && h.at > t0 + 10 * MINUTE).count();
    assert_eq!(backfills, 0, "interval reads meant for after dusk, in broad daylight:\n{log}");
}

/// Twelve systems on Watt need 26 calls at start-up (the system list, a device list and a first
/// power read each, the token) and the plan allows 10 a minute: they wait their turn instead of
/// being refused, so every system's device list is read (its meters and batteries are known from
/// the first states on) and no 60-second window holds more than 10.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_larger_than_a_minute_allows_is_read_whole_at_start_up() {
    let start = next_local_hour(tz_of(A), 12, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 12, plan: SimPlan::Watt, ..SimOptions::default() }, start, 100.0);
    let rig = Rig::new(opts, Login::Code).await;
    let rec = Recorder::start(rig.broker.port, &["enphase/+/state"], rig.sim.sim.clone()).await;
    let fleet: Vec<(u64, bool)> =
        rig.sim.sim.fleet().systems().iter().map(|s| (s.system_id(), s.has_meters() || s.has_battery())).collect();
    assert_eq!(fleet.len(), 12);
    assert!(fleet.iter().filter(|(_, metered)| *metered).count() >= 4, "a mixed fleet: {fleet:?}");
    let running = rig.start().await;
    rec.wait_for("a state of every system, with meter data where there are meters", WAIT, |m| {
        fleet.iter().all(|(id, metered)| {
            states(m, *id)
                .iter()
                .any(|(_, s)| !*metered || s["consumption_power_w"].is_i64() || s["battery_soc_pct"].is_i64())
        })
    })
    .await;
    running.stop().await;
    let hits = rig.hits().await;
    let log: String = hits.iter().map(|h| format!("{} {} {:?}\n", iso(h.at), h.path, h.status)).collect();
    for (id, _) in &fleet {
        let lists: Vec<&Hit> =
            hits.iter().filter(|h| h.system() == Some(*id) && h.path.ends_with("/devices")).collect();
        assert!(lists.len() == 1 && lists[0].status == Some(200), "{id}: one device list, answered:\n{log}");
    }
    assert!(hits.iter().all(|h| h.status == Some(200)), "nothing refused or failed:\n{log}");
    let busiest = busiest_minute(&hits.iter().map(|h| h.at).collect::<Vec<_>>());
    assert!(busiest <= 10, "{busiest} hits in one 60-second window:\n{log}");
}

/// A 422 is never retried unchanged: an interval read whose start Enphase refuses (here a place
/// kept by an earlier run whose clock ran a day ahead) starts afresh from its default window at its
/// next turn, instead of repeating the refused request every few minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_interval_start_is_not_asked_again_and_the_next_read_starts_afresh() {
    let start = next_local_hour(tz_of(A), 15, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Partner, ..SimOptions::default() }, start, 1500.0);
    let rig = Rig::new(opts, Login::Password).await;
    let ahead = rig.now() + DAY;
    let kept = json!({ A.to_string(): { "last_interval": { "production": ahead } } });
    std::fs::write(rig.config.state_dir.join("totals.json"), kept.to_string()).unwrap();
    let rec = Recorder::start(rig.broker.port, &["enphase/+/intervals"], rig.sim.sim.clone()).await;
    let t0 = rig.now();
    let running = rig.start().await;
    let tz = rig.tz(A);
    rig.run_until(next_local_hour(tz, 23, t0), Duration::from_secs(40)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let log: String = hits.iter().map(|h| format!("{} {} {:?}\n", local(tz, h.at), h.path, h.status)).collect();
    let reads: Vec<&Hit> = hits.iter().filter(|h| h.path.ends_with("/telemetry/production_micro")).collect();
    assert_eq!(reads[0].status, Some(422), "the start a day ahead is refused:\n{log}");
    assert_eq!(reads.iter().filter(|h| h.status == Some(422)).count(), 1, "and never asked again:\n{log}");
    assert!(reads.len() >= 2 && reads[1].at >= reads[0].at + 2 * HOUR, "the next read at its turn, after dusk:\n{log}");
    assert_eq!(reads[1].status, Some(200), "{log}");
    assert!(rec.on(&format!("enphase/{A}/intervals")).len() >= 12, "intervals published again:\n{log}");
}

/// The interval read shows the newest power as well (the micros' newest bucket), so the day's
/// last power read is the evening back-fill: one hit fewer. On a micro-only site, the state after
/// it shows the power and upload a summary read would have, and nothing is read after it until
/// the next morning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_last_power_read_on_a_micro_only_site_brings_the_intervals() {
    let start = next_local_hour(tz_of(A), 14, next_month_start(real_now()));
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Watt, ..SimOptions::default() }, start, 2000.0);
    let rig = Rig::new(opts, Login::Code).await;
    let sys = rig.sim.sim.fleet().get(A).unwrap();
    assert_eq!(sys.kind(), SystemKind::MicroOnly);
    let tz = rig.tz(A);
    let rec = Recorder::start(rig.broker.port, &["enphase/+/state"], rig.sim.sim.clone()).await;
    let t0 = rig.now();
    let running = rig.start().await;
    let end = next_local_hour(tz, 23, t0);
    rig.run_until(end, Duration::from_secs(40)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let log: String = hits.iter().map(|h| format!("{} {} {:?}\n", local(tz, h.at), h.path, h.status)).collect();
    let later: Vec<&Hit> = hits.iter().filter(|h| h.at > t0 + 30 * MINUTE && h.at < end).collect();
    let backfills: Vec<&&Hit> = later.iter().filter(|h| h.path.ends_with("/telemetry/production_micro")).collect();
    assert_eq!(backfills.len(), 1, "one back-fill this evening:\n{log}");
    let read = backfills[0];
    assert_eq!(read.status, Some(200), "{log}");
    assert!(
        sys.micro_buckets(read.at - 30 * MINUTE, read.at).iter().any(|b| b.enwh > 0),
        "made while the micros still produced (a power read), at {}:\n{log}",
        local(tz, read.at)
    );
    let after: Vec<&&Hit> = later.iter().filter(|h| h.at > read.at).collect();
    assert!(after.iter().all(|h| !h.is_power_read()), "no power read after it tonight:\n{log}");
    let (_, state) = states(&rec.all(), A)
        .into_iter()
        .find(|(at, _)| *at >= read.at)
        .unwrap_or_else(|| panic!("a state after the read at {}", local(tz, read.at)));
    let model = sys.snapshot(read.at);
    assert_eq!(state["production_power_w"], model.current_power_w, "the newest bucket's power: {state}");
    assert_eq!(state["last_report_at"], iso(model.last_report_at), "the upload it came with: {state}");
}

/// A read planned for the afternoon is not made at night when the clock jumps past dusk while
/// the bridge waits for it (a suspended machine, a stepped clock): the bridge plans again on the
/// clock as it reads when it wakes, and the next power read waits for the morning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_that_jumps_past_dusk_does_not_bring_a_read_in_the_dark() {
    let start = next_local_hour(tz_of(A), 11, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Watt, ..SimOptions::default() }, start, 1.0);
    let rig = Rig::new(opts, Login::Code).await;
    let tz = rig.tz(A);
    let running = rig.start().await;
    rig.settle().await;
    let before = rig.hits().await.len();
    let night = next_local_hour(tz, 23, rig.now());
    admin_post(&rig.sim, "/admin/clock", json!({ "offset_secs": night - rig.now() })).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    running.stop().await;
    let hits = rig.hits().await;
    let log: String = hits.iter().map(|h| format!("{} {} {:?}\n", local(tz, h.at), h.path, h.status)).collect();
    let after: Vec<&Hit> = hits[before..].iter().filter(|h| h.at >= night).collect();
    assert!(after.iter().all(|h| !h.is_power_read()), "a power read at night:\n{log}");
    // Awake all the same: the evening's interval read, owed since dusk, is made at once.
    assert!(after.iter().any(|h| h.path.ends_with("/telemetry/production_micro")), "the back-fill:\n{log}");
}

/// An interval read that starts more than a day back (a Watt plan shared by several systems
/// reads them every other evening; here a place kept by a bridge that was stopped for two and a
/// half days) still reaches the present in one read: every production interval since the kept
/// one is published, none missing, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interval_read_two_days_behind_catches_up_in_one_read() {
    let start = next_local_hour(tz_of(A), 21, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 1, plan: SimPlan::Watt, ..SimOptions::default() }, start, 1.0);
    let rig = Rig::new(opts, Login::Code).await;
    let kept_at = (rig.now() - 60 * HOUR).div_euclid(300) * 300;
    let kept = json!({ A.to_string(): { "last_interval": { "production": kept_at } } });
    std::fs::write(rig.config.state_dir.join("totals.json"), kept.to_string()).unwrap();
    let rec = Recorder::start(rig.broker.port, &["enphase/+/intervals"], rig.sim.sim.clone()).await;
    let running = rig.start().await;
    rig.settle().await;
    running.stop().await;
    let hits = rig.hits().await;
    let reads: Vec<&Hit> = hits.iter().filter(|h| h.path.ends_with("/telemetry/production_micro")).collect();
    assert_eq!(reads.len(), 1, "one read: {hits:?}");
    let read_at = reads[0].at;
    let mut ends: Vec<i64> = rec
        .on(&format!("enphase/{A}/intervals"))
        .iter()
        .map(|m| m.json())
        .filter(|i| i["kind"] == "production")
        .map(|i| i["end_at_epoch"].as_i64().expect("end_at_epoch"))
        .collect();
    ends.sort_unstable();
    let sys = rig.sim.sim.fleet().get(A).unwrap();
    let expected: Vec<i64> = sys.micro_buckets(kept_at, sys.last_upload_at(read_at)).iter().map(|b| b.end).collect();
    assert!(expected.len() > 2 * 288, "the model has {} buckets since the kept one", expected.len());
    assert_eq!(ends.first(), expected.first(), "from the one after the kept one");
    assert_eq!(ends.last(), expected.last(), "to the newest uploaded");
    assert_eq!(ends, expected, "every one, once");
}

/// Grid import and export are Enphase's daily series summed from the system's first day to
/// yesterday (the bridge keeps only that sum of the series, not a value per day).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grid_energy_is_the_sum_of_every_day_since_the_system_started() {
    let start = next_local_hour(tz_of(A), 12, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Kilowatt, ..SimOptions::default() }, start, 100.0);
    let rig = Rig::new(opts, Login::Code).await;
    let rec = Recorder::start(rig.broker.port, &["enphase/+/state"], rig.sim.sim.clone()).await;
    let metered: Vec<u64> =
        rig.sim.sim.fleet().systems().iter().filter(|s| s.has_meters()).map(|s| s.system_id()).collect();
    assert!(!metered.is_empty(), "the fleet has a metered system");
    let with_grid = |s: &Value| s["grid_import_energy_wh"].is_i64() && s["grid_export_energy_wh"].is_i64();
    let running = rig.start().await;
    rec.wait_for("grid energy of every metered system", WAIT, |m| {
        metered.iter().all(|id| states(m, *id).iter().any(|(_, s)| with_grid(s)))
    })
    .await;
    running.stop().await;
    let hits = rig.hits().await;
    let msgs = rec.all();
    for id in metered {
        let sys = rig.sim.sim.fleet().get(id).expect("a simulated system");
        let read = hits
            .iter()
            .find(|h| h.system() == Some(id) && h.path.ends_with("/energy_import_lifetime") && h.status == Some(200))
            .unwrap_or_else(|| panic!("{id}: the import series was read"));
        let yesterday = sys.local_date(read.at).pred_opt().expect("a date");
        let (import, export) =
            sys.operational_date().iter_days().take_while(|d| *d <= yesterday).fold((0, 0), |(i, e), day| {
                let (a, b) = sys.day_import_export(day, read.at);
                (i + a, e + b)
            });
        assert!(import > 0 && export > 0, "{id}: the model has grid energy ({import}, {export})");
        let (_, state) = states(&msgs, id).into_iter().find(|(_, s)| with_grid(s)).expect("a state with grid energy");
        assert_eq!(state["grid_import_energy_wh"].as_i64(), Some(import), "{id}: import");
        assert_eq!(state["grid_export_energy_wh"].as_i64(), Some(export), "{id}: export");
    }
}

/// On a battery site the power flows add up as the model has them: `latest_telemetry`'s
/// consumption figure is production + grid and leaves the battery out (§4.11), so the grid is
/// that figure less production, and the house's load is that figure plus what the battery gives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_power_flows_of_a_battery_site_add_up_as_the_model_has_them() {
    let start = next_local_hour(tz_of(C), 12, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Kilowatt, ..SimOptions::default() }, start, 1.0);
    let rig = Rig::new(opts, Login::Code).await;
    let sys = rig.sim.sim.fleet().get(C).unwrap();
    assert_eq!(sys.kind(), SystemKind::Battery);
    let rec = Recorder::start(rig.broker.port, &["enphase/+/state"], rig.sim.sim.clone()).await;
    let running = rig.start().await;
    rec.wait_for("a state of the battery site with its load", WAIT, |m| {
        states(m, C).iter().any(|(_, s)| s["consumption_power_w"].is_i64())
    })
    .await;
    running.stop().await;
    let hits = rig.hits().await;
    let read = hits
        .iter()
        .find(|h| h.system() == Some(C) && h.path.ends_with("/latest_telemetry") && h.status == Some(200))
        .expect("latest_telemetry was read");
    let bucket = sys.last_meter_bucket(read.at).expect("a meter bucket");
    assert!(bucket.charge + bucket.discharge > 0, "the battery is at work at noon: {bucket:?}");
    let (_, state) = states(&rec.all(), C)
        .into_iter()
        .find(|(_, s)| s["consumption_power_w"].is_i64())
        .expect("a state with the load");
    assert_eq!(state["battery_power_w"].as_i64(), Some((bucket.discharge - bucket.charge) * 4), "{state}");
    assert_eq!(state["grid_power_w"].as_i64(), Some(bucket.grid() * 4), "grid: {bucket:?} {state}");
    assert_eq!(state["consumption_power_w"].as_i64(), Some(bucket.consumption * 4), "load: {bucket:?} {state}");
}

/// One wrong id in `enphase.systems` is named once and skipped: the others are read and
/// published, and the list is not asked for again and again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_configured_system_id_is_named_and_the_others_are_read() {
    let start = next_local_hour(tz_of(A), 12, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 2, plan: SimPlan::Watt, ..SimOptions::default() }, start, 1.0);
    let mut rig = Rig::new(opts, Login::Code).await;
    rig.config.enphase.systems = vec![A, 123];
    // What an earlier run kept of system 123 is kept still: a 404 may pass.
    let kept = json!({ "123": { "production_lifetime_wh": 5, "last_interval": {} } });
    std::fs::create_dir_all(&rig.config.state_dir).unwrap();
    std::fs::write(rig.config.state_dir.join("totals.json"), kept.to_string()).unwrap();
    let rec = Recorder::start(rig.broker.port, &["enphase/#"], rig.sim.sim.clone()).await;
    let running = rig.start().await;
    rec.wait_for("system A's state", WAIT, |m| states(m, A).iter().any(|(_, s)| s["production_power_w"].is_i64()))
        .await;
    rig.settle().await;
    running.stop().await;
    let hits = rig.hits().await;
    let asked: Vec<&Hit> = hits.iter().filter(|h| h.path.ends_with("/systems/123")).collect();
    assert_eq!(asked.len(), 1, "asked once: {hits:?}");
    assert_eq!(asked[0].status, Some(404));
    let info = rec.on("enphase/bridge/info").last().unwrap().json();
    let error = info["last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("enphase.systems[1]: system 123 skipped"), "{info}");
    assert!(states(&rec.all(), B).is_empty(), "only the configured systems are read");
    let totals: Value =
        serde_json::from_slice(&std::fs::read(rig.config.state_dir.join("totals.json")).unwrap()).unwrap();
    assert_eq!(totals["123"]["production_lifetime_wh"], 5, "{totals}");
    assert!(totals[A.to_string()]["production_lifetime_wh"].is_i64(), "{totals}");
}

/// A restart does not read again what the last run read and is not due yet: the intervals and a
/// metered site's totals come back from the state folder (the totals as the last published ones),
/// so a restart costs each system its device list, a power read, its state of charge and the
/// inverter data, and the first states after it are whole all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_read_again_the_intervals_and_totals_that_are_not_due() {
    let start = next_local_hour(tz_of(A), 12, real_now() + HOUR);
    // A simulated minute a second: Watt's 10 hits a minute let the start-up reads through.
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Watt, ..SimOptions::default() }, start, 60.0);
    let rig = Rig::new(opts, Login::Code).await;
    assert_eq!(rig.sim.sim.fleet().get(B).unwrap().kind(), SystemKind::Metered);
    let rec = Recorder::start(rig.broker.port, &["enphase/+/state"], rig.sim.sim.clone()).await;
    let first = rig.start().await;
    // Every system's start-up reads: its intervals and (metered) totals, then quiet.
    rig.settle_when(|hits| {
        let read = |id: u64, end: &str| hits.iter().any(|h| h.system() == Some(id) && h.path.ends_with(end));
        [A, B, C].iter().all(|id| read(*id, "/production_micro")) && read(B, "/energy_import_lifetime")
    })
    .await;
    first.stop().await;
    let before = rig.hits().await.len();
    let evening_reads = |hits: &[Hit]| -> Vec<String> {
        hits.iter()
            .filter(|h| h.path.contains("/telemetry/") || h.path.contains("_lifetime") || h.path.contains("_readings"))
            .map(|h| h.path.clone())
            .collect()
    };
    assert!(!evening_reads(&rig.hits().await).is_empty(), "the first start reads intervals and totals");
    let msgs_before = rec.count();
    let second = rig.start().await;
    // Settled: every system's inverter data read (the last of the start-up reads), then quiet.
    rig.settle_when(|hits| hits[before..].iter().filter(|h| h.path.contains("inverters_summary")).count() >= 3).await;
    second.stop().await;
    let hits = rig.hits().await;
    let again = &hits[before..];
    let log: String = again.iter().map(|h| format!("{} {:?}\n", h.path, h.status)).collect();
    let reads: Vec<String> = evening_reads(again).into_iter().filter(|p| !p.ends_with("/telemetry/battery")).collect();
    assert!(reads.is_empty(), "read again after the restart: {reads:?}\n{log}");
    // The system list, and for each system its device list and inverter data, a battery's state
    // of charge (and a token refresh, should one fall due): besides the power reads, no more.
    let other = again.iter().filter(|h| !h.is_power_read()).count();
    assert!(other <= 1 + 3 * 2 + 1 + 1, "{other} hits besides power reads for the restart:\n{log}");
    let msgs = rec.all();
    let after = states(&msgs[msgs_before..], B);
    let (_, state) = after.last().expect("B's state after the restart");
    for key in
        ["grid_import_energy_wh", "grid_export_energy_wh", "consumption_energy_lifetime_wh", "production_power_w"]
    {
        assert!(state[key].is_i64(), "{key} after the restart: {state}");
    }
}

/// `totals.json` is written at most once a minute while the bridge runs (a fleet's polls would
/// otherwise rewrite it many times a minute), and once more when it stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_totals_are_written_once_a_minute_and_at_the_end() {
    let start = next_local_hour(tz_of(A), 10, real_now() + HOUR);
    let opts = starting_at(SimOptions { systems: 3, plan: SimPlan::Partner, ..SimOptions::default() }, start, 3600.0);
    let rig = Rig::new(opts, Login::Password).await;
    let path = rig.config.state_dir.join("totals.json");
    let running = rig.start().await;
    let deadline = Instant::now() + WAIT;
    while !path.exists() {
        assert!(Instant::now() < deadline, "totals.json after the first polls");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let written = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
    let polls = rig.hits().await.iter().filter(|h| h.is_power_read()).count();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let later = rig.hits().await.iter().filter(|h| h.is_power_read()).count();
    assert!(later > polls, "the bridge polled on ({polls} -> {later})");
    let now = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
    assert_eq!(now, written, "not written again within the minute");
    running.stop().await;
    let last = std::fs::metadata(&path).and_then(|m| m.modified()).unwrap();
    assert!(last > written, "written when the bridge stops");
}
