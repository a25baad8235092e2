//! `enphase-mqtt demo` as a user runs it: the real binary with its embedded broker, read through
//! its stdout and through an MQTT client of our own.

mod common;

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::broker::{Probe, free_port};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);
const A: u64 = 4_210_001;
const B: u64 = 4_210_002;

/// A running demo, its stdout lines collected as they come.
struct Demo {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enphase-mqtt"))
            .arg("demo")
            .args(args)
            .env_remove("ENPHASE_MQTT_CONFIG")
            .env("ENPHASE_MQTT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let stdout = child.stdout.take().unwrap();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        tokio::spawn(async move {
            let mut reader = BufReader::new(err).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Self { child, lines, stderr }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the lines printed so far.
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let lines = self.lines();
            if pred(&lines) {
                return lines;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the demo exited ({status}) before {what}:\n{}\n{}", lines.join("\n"), self.stderr());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}:\n{}\n{}",
                lines.join("\n"),
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends `signal` and waits for the exit code.
    async fn stop(mut self, signal: i32) -> (Option<i32>, String) {
        let pid = self.child.id().expect("running") as i32;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc_kill(pid, signal) };
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the demo stops within 20 s")
            .unwrap();
        // Let the readers reach the end of the pipes.
        tokio::time::sleep(Duration::from_millis(200)).await;
        (status.code(), self.stderr())
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// The text after `label` on the banner line that starts with it.
fn banner_value(lines: &[String], label: &str) -> String {
    let line = lines.iter().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("{label} line"));
    line.trim_start()[label.len()..].trim().to_string()
}

/// Whether the printed messages include a state for each of `ids` and their discovery configs.
fn has_states_and_configs(lines: &[String], ids: &[u64]) -> bool {
    ids.iter().all(|id| {
        lines.iter().any(|l| l.starts_with(&format!("enphase/{id}/state  {{")))
            && lines
                .iter()
                .any(|l| l.starts_with(&format!("homeassistant/sensor/enphase_{id}/production_power/config  {{")))
    })
}

/// A retained state of system `id`, read from the broker on `port`.
async fn retained_state(port: u16, id: u64) -> Value {
    let mut probe = Probe::connect(port, &[&format!("enphase/{id}/state")]).await;
    let (_, payload) = probe.wait_for(Duration::from_secs(10), "a retained state", |_, _| true).await;
    serde_json::from_str(&payload).unwrap_or_else(|e| panic!("state JSON ({e}): {payload}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_prints_discovery_and_states_serves_mqtt_and_stops_on_ctrl_c() {
    let port = free_port();
    let mut demo =
        Demo::start(&["--port", &port.to_string(), "--bind", "127.0.0.1", "--speed", "600", "--systems", "2"]);
    let lines = demo.wait_for("states and discovery configs", |l| has_states_and_configs(l, &[A, B])).await;

    assert!(lines[0].starts_with("enphase-mqtt demo:"), "the banner comes first: {}", lines[0]);
    assert!(!lines.iter().any(|l| l.contains("is taken")), "port {port} was free");
    let broker = banner_value(&lines, "MQTT broker");
    assert!(broker.starts_with(&format!("127.0.0.1:{port} ")), "{broker}");
    assert!(banner_value(&lines, "Enlighten simulator").contains("a simulated day passes in 2 min"));
    assert!(lines.iter().any(|l| l.contains(&format!("mosquitto_sub -h 127.0.0.1 -p {port} "))), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("Home Assistant")));

    // Every message is one `topic  payload` line, the payload cut short.
    let start = lines.iter().position(String::is_empty).expect("a blank line ends the banner") + 1;
    for line in &lines[start..] {
        let (topic, payload) = line.split_once("  ").unwrap_or_else(|| panic!("topic  payload: {line}"));
        assert!(!topic.is_empty() && !topic.contains(' '), "{line}");
        assert!(payload.chars().count() <= 100, "payload cut to 100 characters: {line}");
    }
    let cut =
        lines.iter().find(|l| l.starts_with(&format!("homeassistant/sensor/enphase_{A}/production_power/config")));
    assert!(cut.unwrap().ends_with('…'), "long payloads end with an ellipsis");
    assert!(lines[start..].iter().any(|l| l == "enphase/bridge/availability  online"), "{lines:?}");

    // Any MQTT client can read what the bridge left on the broker.
    let state = retained_state(port, A).await;
    assert_eq!(state["system_id"], A);
    assert!(state["production_power_w"].is_i64(), "{state}");

    // The status page runs too.
    let page = banner_value(&lines, "Status page");
    let health = common::http().get(format!("{page}healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let folder = banner_value(&lines, "State folder");
    let folder = std::path::PathBuf::from(folder.trim_end_matches(" (removed on exit)"));
    assert!(folder.join("tokens.json").exists(), "{}", folder.display());

    let (code, stderr) = demo.stop(SIGINT).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Demo stopped."), "{stderr}");
    assert!(!stderr.contains("ERROR") && !stderr.contains("panicked"), "{stderr}");
    assert!(!folder.exists(), "the state folder is removed on exit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_falls_back_to_a_free_one_with_a_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut demo =
        Demo::start(&["--port", &port.to_string(), "--bind", "127.0.0.1", "--speed", "600", "--systems", "1"]);
    let lines = demo.wait_for("a state", |l| has_states_and_configs(l, &[A])).await;

    let notice = &lines[0];
    let prefix =
        format!("Port {port} is taken (another MQTT broker is probably running): the demo's MQTT broker uses port ");
    assert!(notice.starts_with(&prefix) && notice.ends_with(" instead."), "{notice}");
    let new_port: u16 = notice[prefix.len()..].trim_end_matches(" instead.").parse().expect("the new port");
    assert_ne!(new_port, port);
    assert!(banner_value(&lines, "MQTT broker").starts_with(&format!("127.0.0.1:{new_port} ")));

    let state = retained_state(new_port, A).await;
    assert_eq!(state["system_id"], A);
    let (code, stderr) = demo.stop(SIGTERM).await;
    assert_eq!(code, Some(0), "{stderr}");
    drop(taken);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_demo_flags_are_one_line_errors() {
    for (args, expected) in [
        (vec!["--speed", "0"], "enphase-mqtt: --speed: 0 must be above 0"),
        (vec!["--systems", "0"], "enphase-mqtt: --systems: 0 must be between 1 and 50"),
    ] {
        let out = tokio::time::timeout(
            common::LIMIT,
            Command::new(env!("CARGO_BIN_EXE_enphase-mqtt")).arg("demo").args(&args).kill_on_drop(true).output(),
        )
        .await
        .expect("exits at once")
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with(expected), "{stderr}");
    }
    // A page address that is taken: one line, exit 1, before anything starts.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = tokio::time::timeout(
        common::LIMIT,
        Command::new(env!("CARGO_BIN_EXE_enphase-mqtt"))
            .args(["demo", "--port", &free_port().to_string(), "--bind", "127.0.0.1", "--listen-http", &addr])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("exits at once")
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with(&format!("enphase-mqtt: --listen-http: cannot listen on {addr}: ")), "{stderr}");
}
