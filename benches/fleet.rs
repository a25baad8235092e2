//! Fleet: the real `enphase-mqtt run` binary against the in-process simulator (partner plan) with
//! 1, 100 and 1,000 systems, publishing to a real Mosquitto on loopback.
//!
//! `cargo bench --bench fleet` prints one row per fleet size, `key=value` fields:
//! - `rss_peak_mib` — the bridge process's VmHWM (peak resident set) from `/proc/<pid>/status`,
//!   `rss_end_mib` its VmRSS at the end; targets: ≤ 10 MiB for 1 system, ≤ 40 MiB for 1,000
//!   (`rss_target_mib`, `rss_ok`);
//! - `cpu_ms` — the bridge's user + system CPU time over the whole run, start-up included (from
//!   wait4(2) when it exits; `/proc/<pid>/stat` ticks otherwise), `cpu_ms_to_states` the part
//!   spent until every state and discovery config was out (10 ms ticks);
//! - `polls` — power reads, counted in the simulator's hit log as answered `/summary` and
//!   `/latest_telemetry` requests (each power poll of a system reads one of them),
//!   `cpu_ms_per_poll` = `cpu_ms / polls`; `hits` — every request the simulator counted (token
//!   calls, `/devices` and the slower endpoints included), `cpu_ms_per_hit` = `cpu_ms / hits`,
//!   `hits_per_min` — their mean rate over the run, `hits_busiest_60s` — the most that arrived
//!   in any 60 seconds (the plan allows 300), `hits_429` — the ones the simulator refused for
//!   the quota;
//! - `time_to_all_states_s` / `time_to_all_discovery_s` — from the spawn of `run` until every
//!   system's `enphase/<id>/state` / a site discovery config
//!   (`homeassistant/<component>/enphase_<id>/<object>/config`) was on the broker;
//!   `time_to_all_polled_s` — until every system had its first answered power read (a state built
//!   from the system listing alone comes earlier and has no power in it); `with_power` counts the
//!   systems whose state carries `production_power_w` (a system whose summary has no current power
//!   never gets one); `interval_msgs` counts `enphase/<id>/intervals` messages, `messages`
//!   everything the probe received. `NA` when not reached within the cap; `states`, `discovery`,
//!   `polled` count what was reached.
//!
//! Once every system's state and discovery are out and every system has been polled once (or the
//! cap, `cap_s`, has passed: `FLEET_CAP_SECS`, by default 3 s a system within 120…900 s), the
//! bridge runs for a further fixed window (`FLEET_WINDOW_SECS`, default 60 s), then gets SIGTERM.
//! `FLEET_SIZES=1,100` picks the fleet sizes (default `1,100,1000`). Per-endpoint hit counts and
//! progress lines go to stderr.
//!
//! The quota. The partner plan allows 300 hits a minute, and the bridge's own hit ledger enforces
//! that (over any 60 s window) before a request is sent. `SimOptions` has no way to raise the
//! simulator's limit and `enphase.hits_per_minute` can only lower the bridge's, so this bench runs
//! under the real plan's limit: start-up costs the system listing (pages of 100), one device list
//! per system and a first power read (1 or 2 hits) per system, with the scheduler's other tasks
//! interleaved. For 1,000 systems that is thousands of hits, i.e. many minutes at 300 a minute, so
//! `time_to_all_polled_s` at 1,000 systems is bounded below by the plan's quota whatever the
//! bridge does. `hits_to_all_polled` is how many hits the simulator saw until then and
//! `quota_bound_min_s` the least time that many hits take at 300 a minute. When
//! `time_to_all_polled_s` is far above `quota_bound_min_s`, or `NA` while `hits_per_min` stays well
//! below 300, the bridge itself (see `cpu_ms` against `run_s`), not the quota, holds the first
//! polls back. The simulator runs at real speed (speeding its clock would not help: the bridge
//! paces itself by its own clock, and it would change the data).
//!
//! The binary is this package's `enphase-mqtt`, which Cargo builds (bench profile: the release
//! settings) before it runs a bench: `CARGO_BIN_EXE_enphase-mqtt`.

#[path = "../tests/common/broker.rs"]
mod broker;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker::{Probe, free_port};
use enphase_mqtt::simulator::{self, SimHandle, SimOptions, SimPlan};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_enphase-mqtt");
/// Per-minute hits of the partner plan, for the quota bound.
const PARTNER_PER_MINUTE: f64 = 300.0;
/// Every short step (login, broker start, SIGTERM, HTTP) is bounded by this.
const STEP: Duration = Duration::from_secs(30);

/// `struct rusage` of 64-bit Linux: two `timeval`s, then fourteen `long`s.
#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    rest: [i64; 14],
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
    #[link_name = "wait4"]
    fn libc_wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
}

/// Reaps the exited child `pid` and returns its exit code (`None`: killed by a signal) and its
/// CPU time in ms, with microsecond resolution (`/proc/<pid>/stat` counts in 10 ms ticks).
fn reap(pid: u32) -> Option<(Option<i32>, f64)> {
    let mut status = 0;
    let mut usage = Rusage::default();
    // SAFETY: wait4(2) on our own child with valid pointers; WNOHANG (1) never blocks.
    let got = unsafe { libc_wait4(pid as i32, &mut status, 1, &mut usage) };
    if got != pid as i32 {
        return None;
    }
    let code = (status & 0x7f == 0).then_some((status >> 8) & 0xff);
    let ms = |tv: [i64; 2]| tv[0] as f64 * 1000.0 + tv[1] as f64 / 1000.0;
    Some((code, ms(usage.utime) + ms(usage.stime)))
}

/// The running `enphase-mqtt run`: reaped by us (for its CPU time), SIGKILLed if dropped running.
struct Bridge {
    pid: u32,
    /// Exit code and CPU ms, once reaped.
    done: Option<(Option<i32>, f64)>,
}

impl Bridge {
    // Reaped by `reap` (wait4(2), which also gives the CPU time), not through `Child`.
    #[allow(clippy::zombie_processes)]
    fn spawn(cmd: &mut Command) -> Self {
        let child = cmd.spawn().expect("enphase-mqtt starts");
        Self { pid: child.id(), done: None }
    }

    /// Whether it has exited (reaping it if so).
    fn exited(&mut self) -> bool {
        if self.done.is_none() {
            self.done = reap(self.pid);
        }
        self.done.is_some()
    }

    /// SIGTERM, then SIGKILL if it has not exited within `STEP`; says how it ended.
    fn stop(&mut self) -> String {
        if self.exited() {
            return exit_text(self.done);
        }
        // SAFETY: plain kill(2) on our own child, not reaped yet.
        unsafe { libc_kill(self.pid as i32, 15) };
        self.done = reap_bounded(self.pid, STEP);
        if self.done.is_some() {
            return exit_text(self.done);
        }
        // SAFETY: as above.
        unsafe { libc_kill(self.pid as i32, 9) };
        self.done = reap_bounded(self.pid, STEP);
        "killed_after_sigterm_timeout".into()
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if !self.exited() {
            // SAFETY: plain kill(2) on our own child, not reaped yet.
            unsafe { libc_kill(self.pid as i32, 9) };
            let _ = reap_bounded(self.pid, STEP);
        }
    }
}

fn exit_text(done: Option<(Option<i32>, f64)>) -> String {
    match done {
        Some((Some(code), _)) => code.to_string(),
        Some((None, _)) => "signal".into(),
        None => "unknown".into(),
    }
}

/// Waits for the child `pid` at most `limit` and reaps it.
fn reap_bounded(pid: u32, limit: Duration) -> Option<(Option<i32>, f64)> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(done) = reap(pid) {
            return Some(done);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn env_secs(name: &str) -> Option<Duration> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).map(Duration::from_secs)
}

/// How long `n` systems get to be all polled once: 3 s a system, at least 2 and at most 15 minutes
/// (1,000 systems need several minutes of quota for their first polls alone).
fn default_cap(n: usize) -> Duration {
    Duration::from_secs((3 * n as u64).clamp(120, 900))
}

fn sizes() -> Vec<usize> {
    let raw = std::env::var("FLEET_SIZES").unwrap_or_else(|_| "1,100,1000".into());
    let sizes: Vec<usize> = raw.split(',').filter_map(|s| s.trim().parse().ok()).filter(|n| *n > 0).collect();
    if sizes.is_empty() {
        eprintln!("fleet: FLEET_SIZES={raw:?} names no fleet size (e.g. FLEET_SIZES=1,100,1000)");
        std::process::exit(2);
    }
    sizes
}

/// Clock ticks per second for `/proc/<pid>/stat` (usually 100).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// What `/proc/<pid>` says about the bridge.
#[derive(Debug, Default, Clone, Copy)]
struct ProcSample {
    hwm_kib: u64,
    rss_kib: u64,
    cpu_ticks: u64,
}

fn sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses): state is field 3,
    // utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(ProcSample { hwm_kib: kib("VmHWM:")?, rss_kib: kib("VmRSS:")?, cpu_ticks: utime + stime })
}

/// A Mosquitto on a free loopback port, killed when dropped. Unlike the tests' broker it keeps
/// every queued message for a slow subscriber (the default drops QoS 1 messages past 1,000
/// queued, and 1,000 systems publish far more than that in a burst).
struct Mosquitto {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        let binary = ["/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("mosquitto");
        let dir = tempfile::tempdir().expect("temporary folder");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        let text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n\
             max_queued_bytes 0\nlog_dest file {}\n",
            dir.path().join("mosquitto.log").display()
        );
        std::fs::write(&conf, text).expect("write mosquitto.conf");
        let child = Command::new(binary)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                eprintln!("fleet: cannot start {binary} ({e}); install it: apt-get install mosquitto");
                std::process::exit(1);
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                eprintln!("fleet: mosquitto did not listen on 127.0.0.1:{port} within 10 s");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, child, _dir: dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("-c")
        .arg(config)
        .args(args)
        .env_remove("ENPHASE_MQTT_CONFIG")
        .env_remove("RUST_LOG")
        .env("ENPHASE_MQTT_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Waits for `child` at most `limit`; `None` if it is still running.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One fleet size's measurements.
#[derive(Default)]
struct Row {
    systems: usize,
    rss_peak_kib: u64,
    rss_end_kib: u64,
    cpu_ms: f64,
    cpu_ms_to_states: f64,
    polls: usize,
    hits: usize,
    hits_busiest_60s: usize,
    hits_429: usize,
    hits_to_polled: Option<usize>,
    states: usize,
    discovery: usize,
    polled: usize,
    power: usize,
    interval_msgs: u64,
    t_states: Option<f64>,
    t_discovery: Option<f64>,
    t_polled: Option<f64>,
    messages: u64,
    cap_s: u64,
    run_s: f64,
    exit: String,
}

/// The most of `times` (ms) inside any 60-second window `[t, t + 60 s)`.
fn busiest_60s(times: &[i64]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut lo = 0;
    (0..sorted.len())
        .map(|hi| {
            while sorted[hi] - sorted[lo] >= 60_000 {
                lo += 1;
            }
            hi - lo + 1
        })
        .max()
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn secs(t: Option<f64>) -> String {
    t.map_or_else(|| "NA".into(), |s| format!("{s:.2}"))
}

impl Row {
    fn line(&self) -> String {
        let per = |count: usize| {
            if count == 0 { "NA".into() } else { format!("{:.2}", self.cpu_ms / count as f64) }
        };
        let (per_poll, per_hit) = (per(self.polls), per(self.hits));
        let (target, ok) = match self.systems {
            1 => ("10", if mib(self.rss_peak_kib) <= 10.0 { "yes" } else { "no" }),
            1000 => ("40", if mib(self.rss_peak_kib) <= 40.0 { "yes" } else { "no" }),
            _ => ("NA", "NA"),
        };
        // At most 300 hits in any 60 s: h hits need at least (⌈h / 300⌉ − 1) minutes.
        let quota_bound = self.hits_to_polled.map_or_else(
            || "NA".into(),
            |h| format!("{:.0}", ((h as f64 / PARTNER_PER_MINUTE).ceil() - 1.0).max(0.0) * 60.0),
        );
        let hits_to_polled = self.hits_to_polled.map_or_else(|| "NA".into(), |h| h.to_string());
        let mut s = String::new();
        let _ = write!(
            s,
            "systems={} rss_peak_mib={:.1} rss_end_mib={:.1} rss_target_mib={target} rss_ok={ok} cpu_ms={:.0} \
             cpu_ms_to_states={:.0} cpu_ms_per_poll={per_poll} polls={} cpu_ms_per_hit={per_hit} hits={} \
             hits_per_min={:.0} hits_busiest_60s={} hits_429={} time_to_all_states_s={} time_to_all_discovery_s={} time_to_all_polled_s={} \
             hits_to_all_polled={hits_to_polled} quota_bound_min_s={quota_bound} states={} discovery={} polled={} \
             with_power={} interval_msgs={} messages={} cap_s={} run_s={:.0} exit={}",
            self.systems,
            mib(self.rss_peak_kib),
            mib(self.rss_end_kib),
            self.cpu_ms,
            self.cpu_ms_to_states,
            self.polls,
            self.hits,
            self.hits as f64 * 60.0 / self.run_s.max(1.0),
            self.hits_busiest_60s,
            self.hits_429,
            secs(self.t_states),
            secs(self.t_discovery),
            secs(self.t_polled),
            self.states,
            self.discovery,
            self.polled,
            self.power,
            self.interval_msgs,
            self.messages,
            self.cap_s,
            self.run_s,
            self.exit,
        );
        s
    }
}

/// First arrival per system, seconds since the bridge started.
#[derive(Default)]
struct Seen {
    state: BTreeMap<u64, f64>,
    power: BTreeMap<u64, f64>,
    discovery: BTreeMap<u64, f64>,
    /// First answered power read (`/summary` or `/latest_telemetry`), from the simulator's hit log.
    polled: BTreeMap<u64, f64>,
    interval_msgs: u64,
    messages: u64,
}

impl Seen {
    fn note(&mut self, ids: &BTreeSet<u64>, topic: &str, payload: &str, at: f64) {
        self.messages += 1;
        let parts: Vec<&str> = topic.split('/').collect();
        match parts.as_slice() {
            ["enphase", _, "intervals"] => self.interval_msgs += 1,
            ["enphase", id, "state"] => {
                let Some(id) = id.parse::<u64>().ok().filter(|id| ids.contains(id)) else { return };
                if payload.is_empty() {
                    return;
                }
                self.state.entry(id).or_insert(at);
                let has_power = serde_json::from_str::<Value>(payload)
                    .ok()
                    .is_some_and(|v| v.get("production_power_w").is_some_and(|p| !p.is_null()));
                if has_power {
                    self.power.entry(id).or_insert(at);
                }
            }
            ["homeassistant", _, node, _, "config"] => {
                // Site configs only: `enphase_<id>`, not the inverters' `enphase_<id>_<serial>`.
                let Some(id) = node.strip_prefix("enphase_").and_then(|n| n.parse::<u64>().ok()) else { return };
                if ids.contains(&id) && !payload.is_empty() {
                    self.discovery.entry(id).or_insert(at);
                }
            }
            _ => {}
        }
    }

    /// Reads the first answered power read of each system from the hit log.
    fn note_hits(&mut self, hits: &[Value], started_ms: i64) {
        for h in hits {
            if h["status"].as_u64() != Some(200) {
                continue;
            }
            let (Some(path), Some(ms)) = (h["path"].as_str(), h["real_ms"].as_i64()) else { continue };
            if let Some(id) = power_read(path) {
                self.polled.entry(id).or_insert((ms - started_ms) as f64 / 1000.0);
            }
        }
    }

    fn all(map: &BTreeMap<u64, f64>, n: usize) -> Option<f64> {
        (map.len() >= n).then(|| map.values().copied().fold(0.0, f64::max))
    }

    fn states_out(&self, n: usize) -> bool {
        Self::all(&self.state, n).is_some() && Self::all(&self.discovery, n).is_some()
    }
}

/// The system of a power read: `/api/v4/systems/{id}/summary` or `…/latest_telemetry`.
fn power_read(path: &str) -> Option<u64> {
    let rest = path.strip_prefix("/api/v4/systems/")?;
    let (id, endpoint) = rest.split_once('/')?;
    matches!(endpoint, "summary" | "latest_telemetry").then(|| id.parse().ok()).flatten()
}

/// `/api/v4/systems/4210001/summary` → `summary`; `/oauth/token` stays.
fn endpoint_name(path: &str) -> String {
    match path.strip_prefix("/api/v4/systems/").and_then(|rest| rest.split_once('/')) {
        Some((_, endpoint)) => endpoint.to_owned(),
        None => path.trim_start_matches("/api/v4").to_owned(),
    }
}

async fn admin_hits(sim: &SimHandle) -> Vec<Value> {
    let client = reqwest::Client::builder().timeout(STEP).build().expect("HTTP client");
    let answer = client.get(format!("{}/admin/hits", sim.base_url)).send().await;
    match answer {
        Ok(resp) => resp.json::<Value>().await.ok().and_then(|v| v.as_array().cloned()).unwrap_or_default(),
        Err(e) => {
            eprintln!("fleet: could not read the simulator's hit log: {e}");
            Vec::new()
        }
    }
}

async fn run_fleet(n: usize, cap: Duration, window: Duration, ticks: f64) -> Row {
    let opts = SimOptions { systems: n, plan: SimPlan::Partner, ..SimOptions::default() };
    let sim = simulator::spawn(opts.clone(), "127.0.0.1:0".parse().expect("address")).await.expect("simulator starts");
    let ids: BTreeSet<u64> = sim.sim.fleet().systems().iter().map(|s| s.system_id()).collect();
    assert_eq!(ids.len(), n, "the simulator has {n} systems");
    let broker = Mosquitto::start();

    let dir = tempfile::tempdir().expect("temporary folder");
    let config: PathBuf = dir.path().join("config.yaml");
    let text = format!(
        "enphase:\n  api_key: {}\n  client_id: {}\n  client_secret: {}\n  plan: partner\n  base_url: {}\n  auth:\n    \
         flow: password\n    username: {}\n    password: {}\n  min_poll_interval_secs: 60\nmqtt:\n  host: 127.0.0.1\n  \
         port: {}\nstate_dir: {}\n",
        opts.api_key,
        opts.client_id,
        opts.client_secret,
        sim.base_url,
        opts.username,
        opts.password,
        broker.port,
        dir.path().join("state").display()
    );
    std::fs::write(&config, text).expect("write config.yaml");

    let login_log = dir.path().join("login.log");
    let mut login = command(&config, &["auth", "login"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&login_log).expect("log file"))
        .spawn()
        .expect("enphase-mqtt starts");
    match wait_bounded(&mut login, STEP) {
        Some(status) if status.success() => {}
        other => {
            let _ = login.kill();
            let _ = login.wait();
            panic!("`enphase-mqtt auth login` failed ({other:?}):\n{}", tail(&login_log, 20));
        }
    }

    let mut probe =
        Probe::connect(broker.port, &["enphase/+/state", "enphase/+/intervals", "homeassistant/+/+/+/config"]).await;

    let run_log = dir.path().join("run.log");
    let started = Instant::now();
    let started_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let mut bridge = Bridge::spawn(
        command(&config, &["run"]).stdout(Stdio::null()).stderr(std::fs::File::create(&run_log).expect("log file")),
    );
    let pid = bridge.pid;

    let mut seen = Seen::default();
    let mut last = ProcSample::default();
    let mut peak_hwm = 0;
    let mut cpu_to_states: Option<u64> = None;
    let mut next_sample = Instant::now();
    let mut next_hits = Instant::now() + Duration::from_secs(2);
    let mut next_report = Instant::now() + Duration::from_secs(30);
    let mut window_end: Option<Instant> = None;
    let mut exit = String::new();
    loop {
        let now = Instant::now();
        if now >= next_sample {
            if let Some(s) = sample(pid) {
                peak_hwm = peak_hwm.max(s.hwm_kib);
                last = s;
            }
            next_sample = now + Duration::from_millis(500);
        }
        if bridge.exited() {
            exit = format!("died:{}", exit_text(bridge.done));
            eprintln!("fleet: `enphase-mqtt run` exited early ({exit}):\n{}", tail(&run_log, 20));
            break;
        }
        if seen.states_out(n) && cpu_to_states.is_none() {
            cpu_to_states = sample(pid).map(|s| s.cpu_ticks);
        }
        if now >= next_hits && seen.polled.len() < n {
            seen.note_hits(&admin_hits(&sim).await, started_ms);
            next_hits = Instant::now() + Duration::from_secs(if n > 100 { 10 } else { 2 });
        }
        let done = seen.states_out(n) && Seen::all(&seen.polled, n).is_some();
        if window_end.is_none() && (done || now.duration_since(started) >= cap) {
            if !done {
                eprintln!(
                    "fleet: {n} systems: cap of {}s reached with states={} discovery={} polled={}",
                    cap.as_secs(),
                    seen.state.len(),
                    seen.discovery.len(),
                    seen.polled.len()
                );
            }
            window_end = Some(now + window);
        }
        if window_end.is_some_and(|end| now >= end) {
            break;
        }
        if now >= next_report {
            eprintln!(
                "fleet: {n} systems, {:.0}s: states={} discovery={} polled={} with_power={} cpu_ms={:.0} rss_mib={:.1}",
                now.duration_since(started).as_secs_f64(),
                seen.state.len(),
                seen.discovery.len(),
                seen.polled.len(),
                seen.power.len(),
                last.cpu_ticks as f64 * 1000.0 / ticks,
                mib(last.rss_kib),
            );
            next_report = now + Duration::from_secs(30);
        }
        // Everything the broker has for us, then a short pause.
        if let Some((topic, payload, _)) = probe.next(Duration::from_millis(200)).await {
            let at = started.elapsed().as_secs_f64();
            seen.note(&ids, &topic, &payload, at);
            while let Some((topic, payload, _)) = probe.next(Duration::ZERO).await {
                seen.note(&ids, &topic, &payload, at);
            }
        }
    }
    let run_s = started.elapsed().as_secs_f64();

    if exit.is_empty() {
        if let Some(s) = sample(pid) {
            peak_hwm = peak_hwm.max(s.hwm_kib);
            last = s;
        }
        exit = bridge.stop();
    }
    // CPU time from wait4(2) (µs resolution, every thread), else the last /proc sample.
    let cpu_ms = bridge.done.map_or(last.cpu_ticks as f64 * 1000.0 / ticks, |(_, ms)| ms);
    // Anything still in flight.
    while let Some((topic, payload, _)) = probe.next(Duration::from_millis(300)).await {
        seen.note(&ids, &topic, &payload, run_s);
    }

    let hits = admin_hits(&sim).await;
    seen.note_hits(&hits, started_ms);
    let t_polled = Seen::all(&seen.polled, n);
    let hits_to_polled = t_polled.map(|t| {
        // Hits the simulator logged between the bridge's start and the last system's first poll.
        let end_ms = started_ms + (t * 1000.0).ceil() as i64;
        hits.iter().filter_map(|h| h["real_ms"].as_i64()).filter(|ms| (started_ms..=end_ms).contains(ms)).count()
    });
    let mut by_endpoint: BTreeMap<String, usize> = BTreeMap::new();
    for h in &hits {
        *by_endpoint.entry(endpoint_name(h["path"].as_str().unwrap_or("?"))).or_default() += 1;
    }
    let by_endpoint: Vec<String> = by_endpoint.iter().map(|(k, v)| format!("{k}={v}")).collect();
    eprintln!("fleet: {n} systems, hits by endpoint: {}", by_endpoint.join(" "));
    let row = Row {
        systems: n,
        rss_peak_kib: peak_hwm,
        rss_end_kib: last.rss_kib,
        cpu_ms,
        cpu_ms_to_states: cpu_to_states.unwrap_or(last.cpu_ticks) as f64 * 1000.0 / ticks,
        polls: hits
            .iter()
            .filter(|h| h["status"].as_u64() == Some(200) && h["path"].as_str().and_then(power_read).is_some())
            .count(),
        hits: hits.len(),
        hits_busiest_60s: busiest_60s(&hits.iter().filter_map(|h| h["real_ms"].as_i64()).collect::<Vec<_>>()),
        hits_429: hits.iter().filter(|h| h["status"].as_u64() == Some(429)).count(),
        hits_to_polled,
        states: seen.state.len(),
        discovery: seen.discovery.len(),
        polled: seen.polled.len(),
        power: seen.power.len(),
        interval_msgs: seen.interval_msgs,
        t_states: Seen::all(&seen.state, n),
        t_discovery: Seen::all(&seen.discovery, n),
        t_polled,
        messages: seen.messages,
        cap_s: cap.as_secs(),
        run_s,
        exit,
    };
    drop(probe);
    sim.shutdown().await;
    drop(broker);
    row
}

fn main() {
    let sizes = sizes();
    let cap = env_secs("FLEET_CAP_SECS");
    let window = env_secs("FLEET_WINDOW_SECS").unwrap_or(Duration::from_secs(60));
    let ticks = clock_ticks();
    if !Path::new(BIN).exists() {
        eprintln!("fleet: {BIN} is missing; `cargo bench --bench fleet` builds it (or: cargo build --release)");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    println!(
        "fleet: `enphase-mqtt run` ({BIN}) vs the simulator (partner plan, 300 hits/min enforced by the bridge's \
         ledger) and Mosquitto on loopback; min_poll_interval_secs=60; up to cap_s for every system to be polled \
         once, then a {}s window; CLK_TCK={ticks}",
        window.as_secs()
    );
    let mut rows = Vec::new();
    for n in sizes {
        eprintln!("fleet: {n} systems …");
        let row = runtime.block_on(run_fleet(n, cap.unwrap_or_else(|| default_cap(n)), window, ticks));
        eprintln!("{}", row.line());
        rows.push(row);
    }
    println!("fleet results:");
    for row in &rows {
        println!("{}", row.line());
    }
}
