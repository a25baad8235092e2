//! Shared test harness: the simulator in-process on loopback, a config file pointing at it, and
//! the real `enphase-mqtt` binary run as a child process with a time limit.
#![allow(dead_code)]

pub mod broker;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use enphase_mqtt::simulator::{self, SimHandle, SimOptions};
use serde_json::Value;
use tokio::process::Command;

/// Every child process and HTTP call in the tests is bounded by this.
pub const LIMIT: Duration = Duration::from_secs(30);

/// 00:00 UTC of the first day of the month after the one holding `secs` (epoch seconds).
pub fn next_month_start(secs: i64) -> i64 {
    enphase_mqtt::enlighten::ledger::next_month_start_ms(secs * 1000) / 1000
}

/// The largest number of `times` (epoch seconds) inside any 60-second window `[t, t + 60)`.
pub fn busiest_minute(times: &[i64]) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..sorted.len() {
        while sorted[hi] - sorted[lo] >= 60 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

/// A simulator on a free loopback port.
pub async fn sim(opts: SimOptions) -> SimHandle {
    simulator::spawn(opts, "127.0.0.1:0".parse().unwrap()).await.expect("simulator starts")
}

/// A folder with `config.yaml` pointing at `sim`, with `extra` lines appended under `enphase:`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub state_dir: PathBuf,
}

impl Setup {
    pub fn new(sim: &SimHandle, opts: &SimOptions, enphase_extra: &str) -> Self {
        Self::with_top(sim, opts, enphase_extra, "")
    }

    /// Like `new`, with `top` (e.g. an `mqtt:` section) appended at the top level.
    pub fn with_top(sim: &SimHandle, opts: &SimOptions, enphase_extra: &str, top: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("state");
        let config = dir.path().join("config.yaml");
        let text = format!(
            "enphase:\n  api_key: {}\n  client_id: {}\n  client_secret: {}\n  plan: {}\n  base_url: {}\n{enphase_extra}{top}state_dir: {}\n",
            opts.api_key,
            opts.client_id,
            opts.client_secret,
            opts.plan.to_string().to_lowercase(),
            sim.base_url,
            state_dir.display()
        );
        std::fs::write(&config, text).unwrap();
        Self { dir, config, state_dir }
    }

    pub fn tokens_path(&self) -> PathBuf {
        self.state_dir.join("tokens.json")
    }

    pub fn tokens(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.tokens_path()).expect("tokens.json exists"))
            .expect("tokens.json is whole JSON")
    }

    /// Runs `enphase-mqtt -c config <args>` to the end.
    pub async fn run(&self, args: &[&str]) -> Output {
        run(&self.config, args).await
    }

    /// Starts `enphase-mqtt -c config <args>` with piped output.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        command(&self.config, args).spawn().expect("binary starts")
    }
}

pub fn command(config: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_enphase-mqtt"));
    cmd.arg("-c")
        .arg(config)
        .args(args)
        .env_remove("ENPHASE_MQTT_CONFIG")
        .env("ENPHASE_MQTT_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// A finished child's exit code and output.
#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

pub async fn run(config: &Path, args: &[&str]) -> Output {
    let child = command(config, args).spawn().expect("binary starts");
    let out = tokio::time::timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("enphase-mqtt {args:?} did not finish within {LIMIT:?}"))
        .expect("wait for child");
    Output {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// An HTTP client for playing the browser and the admin API: no redirects followed.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).timeout(LIMIT).build().unwrap()
}

pub async fn admin_get(sim: &SimHandle, path: &str) -> Value {
    http().get(format!("{}{path}", sim.base_url)).send().await.unwrap().json().await.unwrap()
}

pub async fn admin_post(sim: &SimHandle, path: &str, body: Value) {
    let resp = http().post(format!("{}{path}", sim.base_url)).json(&body).send().await.unwrap();
    assert!(resp.status().is_success(), "admin {path} answered {}", resp.status());
}

/// Every counted request the simulator saw.
pub async fn hits(sim: &SimHandle) -> Vec<Value> {
    admin_get(sim, "/admin/hits").await.as_array().cloned().unwrap_or_default()
}

/// Asserts that no secret of the simulator's options or the token file shows in `text`.
pub fn assert_no_secrets(text: &str, opts: &SimOptions, tokens: Option<&Value>) {
    for secret in [&opts.client_secret, &opts.api_key, &opts.password] {
        assert!(!text.contains(secret.as_str()), "a secret leaked into output:\n{text}");
    }
    if let Some(t) = tokens {
        for key in ["access_token", "refresh_token"] {
            if let Some(v) = t[key].as_str() {
                assert!(!text.contains(v), "{key} leaked into output:\n{text}");
            }
        }
    }
}

/// A running `enphase-mqtt run` process, its stderr collected.
pub struct Daemon {
    pub child: tokio::process::Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Daemon {
    /// Starts `enphase-mqtt -c <config> run`.
    pub fn spawn(setup: &Setup) -> Self {
        Self::spawn_args(setup, &["run"])
    }

    /// Starts `enphase-mqtt -c <config> <args>` (`run` with more options).
    pub fn spawn_args(setup: &Setup, args: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = setup.spawn(args);
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self { child, log }
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits for the exit code.
    pub async fn sigterm(mut self) -> Option<i32> {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc_kill(pid, 15) };
        let status = tokio::time::timeout(LIMIT, self.child.wait()).await.expect("stops after SIGTERM").unwrap();
        status.code()
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}
