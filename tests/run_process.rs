//! The `enphase-mqtt run` process itself through a simulated day: it keeps the sped-up clock of
//! the simulator (`--clock-url`), talks to it over loopback HTTP, and publishes to a real
//! Mosquitto. (The finer scenarios run the same bridge in-process: `bridge_e2e.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::broker::{Broker, retained};
use common::*;
use enphase_mqtt::clock::{Clock, SystemClock};
use enphase_mqtt::simulator::{SimOptions, SimPlan};
use serde_json::Value;

const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Watt plan, three systems, 26 simulated hours (at 4000× after start-up) from 21:00 UTC on the
/// 1st: the process
/// spends about a thirtieth of the month a day, never passes 10 hits in 60 seconds, gets no 429,
/// refreshes its token ahead of expiry, keeps every system's state current on the broker, and
/// leaves `offline` behind on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_run_process_keeps_the_watt_budget_through_a_simulated_day() {
    let now = SystemClock.now_secs();
    let start = next_month_start(now) + 21 * HOUR;
    let opts = SimOptions {
        systems: 3,
        plan: SimPlan::Watt,
        offset_secs: start - now,
        // Start-up runs at 60× (its file writes and round trips take real milliseconds), then the
        // day at 4000×.
        speed: 60.0,
        ..SimOptions::default()
    };
    let sim = sim(opts.clone()).await;
    let broker = Broker::start();
    let mqtt = format!("mqtt:\n  host: 127.0.0.1\n  port: {}\n  keep_alive: 5\n", broker.port);
    let setup = Setup::with_top(&sim, &opts, "  auth:\n    flow: authorization_code\n", &mqtt);
    let clock = ["--clock-url", sim.base_url.as_str()];

    // The homeowner approves (the simulator does at once); `auth code` stores the tokens.
    let redirect = "https://api.enphaseenergy.com/oauth/redirect_uri";
    let authorize = url::Url::parse_with_params(
        &format!("{}/oauth/authorize", sim.base_url),
        &[("response_type", "code"), ("client_id", opts.client_id.as_str()), ("redirect_uri", redirect)],
    )
    .unwrap();
    let approved = http().get(authorize).send().await.unwrap();
    let location = approved.headers()["location"].to_str().unwrap().to_string();
    let code = url::Url::parse(&location).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
    let login = setup.run(&[clock[0], clock[1], "auth", "code", &code]).await;
    assert_eq!(login.code, Some(0), "{login:?}");

    let t0 = sim.sim.now_secs();
    let daemon = Daemon::spawn_args(&setup, &[clock[0], clock[1], "run"]);
    let started = Instant::now();
    loop {
        let hits = hits(&sim).await;
        let backfills = hits.iter().filter(|h| h["path"].as_str().is_some_and(|p| p.ends_with("/production_micro")));
        if backfills.count() == 3 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "start-up did not finish: {hits:?}\n{}", daemon.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    admin_post(&sim, "/admin/clock", serde_json::json!({ "speed": 4000.0 })).await;
    while sim.sim.now_secs() < t0 + 26 * HOUR {
        assert!(started.elapsed() < Duration::from_secs(90), "the simulated day took too long");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let states = retained(broker.port, &["enphase/+/state"]).await;
    let log = daemon.log();
    assert_eq!(daemon.sigterm().await, Some(0), "{log}");

    let hits: Vec<Value> = hits(&sim).await;
    let listing: String = hits.iter().map(|h| format!("{} {} {}\n", h["at"], h["path"], h["status"])).collect();
    assert!(hits.iter().all(|h| h["status"] == 200), "every hit answered 200:\n{listing}");
    let times: Vec<i64> = hits.iter().map(|h| h["at"].as_i64().unwrap()).collect();
    let busiest = busiest_minute(&times);
    assert!(busiest <= 10, "{busiest} hits in one 60-second window:\n{listing}");
    // 1,000 hits over the month's 30 days is 33 a day; start-up reads (the first half hour) aside,
    // at most 45 in the day.
    let after_startup = times.iter().filter(|t| **t >= t0 + 1800).count();
    assert!(after_startup <= 45, "{after_startup} hits in the day after start-up:\n{listing}\n{log}");
    let power_reads = hits
        .iter()
        .filter(|h| {
            h["at"].as_i64() > Some(t0 + 1800)
                && h["path"].as_str().is_some_and(|p| p.ends_with("/summary") || p.ends_with("/latest_telemetry"))
        })
        .count();
    assert!(power_reads >= 15, "only {power_reads} power reads in the day:\n{listing}");
    let refreshed = hits
        .iter()
        .any(|h| h["path"] == "/oauth/token" && h["grant"] == "refresh_token" && h["at"].as_i64() < Some(t0 + DAY));
    assert!(refreshed, "the day-long token was refreshed before it expired:\n{listing}");

    for id in [4_210_001u64, 4_210_002, 4_210_003] {
        let state: Value = serde_json::from_str(&states[&format!("enphase/{id}/state")]).unwrap();
        let report = chrono::DateTime::parse_from_rfc3339(state["last_report_at"].as_str().unwrap()).unwrap();
        assert!(report.timestamp() > t0 + 12 * HOUR, "{id}: the state on the broker is from the day: {state}");
    }
    let after = retained(broker.port, &["enphase/bridge/availability"]).await;
    assert_eq!(after["enphase/bridge/availability"], "offline");
}
