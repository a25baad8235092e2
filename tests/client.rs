//! The typed client against the simulator over real HTTP: tokens refreshed ahead of expiry, the
//! 401 rule, the hit ledger, and every error envelope mapped to its typed error.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::*;
use enphase_mqtt::clock::{Clock, ManualClock, SystemClock};
use enphase_mqtt::config::{self, AuthFlow};
use enphase_mqtt::enlighten::api::TelemetryQuery;
use enphase_mqtt::enlighten::error::RatePeriod;
use enphase_mqtt::enlighten::{ApiError, EnlightenClient};
use enphase_mqtt::simulator::{SimHandle, SimOptions, SimPlan};
use serde_json::json;

const FIRST: i64 = 4_210_001;

fn client_for(
    sim: &SimHandle,
    opts: &SimOptions,
    state_dir: &Path,
    extra: &str,
    clock: Arc<dyn Clock>,
) -> EnlightenClient {
    let text = format!(
        "enphase:\n  api_key: {}\n  client_id: {}\n  client_secret: {}\n  plan: {}\n  base_url: {}\n  request_timeout_secs: 2\n{extra}",
        opts.api_key,
        opts.client_id,
        opts.client_secret,
        opts.plan.to_string().to_lowercase(),
        sim.base_url
    );
    let config = config::parse(&text, &|_| None).expect("test config is valid");
    EnlightenClient::from_config(&config.enphase, state_dir, clock).expect("client builds")
}

/// Approves the app in the simulator and stores the tokens (one token hit).
async fn authorize(sim: &SimHandle, opts: &SimOptions, client: &EnlightenClient) {
    let redirect = "http://127.0.0.1:9/callback";
    let url = format!(
        "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri={redirect}&state=s",
        sim.base_url, opts.client_id
    );
    let resp = http().get(url).send().await.unwrap();
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let code = location.split("code=").nth(1).unwrap().split('&').next().unwrap();
    let tokens = client.tokens().oauth().exchange_code(code, redirect).await.expect("code exchange");
    client.tokens().store_new(tokens, AuthFlow::AuthorizationCode).await.unwrap();
}

fn statuses(hits: &[serde_json::Value]) -> Vec<String> {
    hits.iter()
        .map(|h| match h["grant"].as_str() {
            Some(grant) => format!("token:{grant}:{}", h["status"]),
            None => format!("{}:{}", h["path"].as_str().unwrap_or("?").rsplit('/').next().unwrap_or("?"), h["status"]),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tokens_are_refreshed_ahead_of_expiry_without_a_401() {
    let opts = SimOptions { access_ttl_secs: 60, ..SimOptions::default() };
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(SystemClock.now_ms());
    let client = client_for(&sim, &opts, dir.path(), "", clock.clone());
    authorize(&sim, &opts, &client).await;

    client.summary(FIRST, None).await.expect("summary with a fresh token");
    // 53 s into a 60 s token: 7 s left, more than the margin (a tenth of the life: 6 s).
    clock.advance_ms(53_000);
    client.summary(FIRST, None).await.unwrap();
    // 55 s: inside the margin, so the client refreshes before calling.
    clock.advance_ms(2_000);
    client.summary(FIRST, None).await.unwrap();
    assert_eq!(
        statuses(&hits(&sim).await),
        ["token:authorization_code:200", "summary:200", "summary:200", "token:refresh_token:200", "summary:200"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_refreshes_once_and_retries_once() {
    let opts = SimOptions { access_ttl_secs: 1, ..SimOptions::default() };
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    // The client's clock stands still, so it believes its token is fresh; the server's does not.
    let clock = ManualClock::new(SystemClock.now_ms());
    let client = client_for(&sim, &opts, dir.path(), "", clock.clone());
    authorize(&sim, &opts, &client).await;
    admin_post(&sim, "/admin/token_ttl", json!({"access_secs": 86_400})).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;

    let summary = client.summary(FIRST, None).await.expect("retried with a refreshed token");
    assert_eq!(summary.system_id, Some(FIRST));
    assert_eq!(
        statuses(&hits(&sim).await),
        ["token:authorization_code:200", "summary:401", "token:refresh_token:200", "summary:200"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn device_level_401_on_watt_stops_that_endpoint_and_nothing_else() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, &opts, dir.path(), "", Arc::new(SystemClock));
    authorize(&sim, &opts, &client).await;

    let err = client.micros_telemetry(FIRST, 1, 10, TelemetryQuery::default()).await.unwrap_err();
    assert!(matches!(err, ApiError::NotPermitted { .. }), "{err:?}");
    let after_first = hits(&sim).await.len();
    let again = client.micros_telemetry(FIRST, 1, 10, TelemetryQuery::default()).await.unwrap_err();
    assert!(matches!(again, ApiError::NotPermitted { .. }));
    assert_eq!(hits(&sim).await.len(), after_first, "a denied endpoint is not called again");
    assert_eq!(client.denied_endpoints().len(), 1);
    client.summary(FIRST, None).await.expect("site-level endpoints still work");
    assert_eq!(
        statuses(&hits(&sim).await),
        ["token:authorization_code:200", "telemetry:401", "token:refresh_token:200", "telemetry:401", "summary:200"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ledger_refuses_the_11th_call_in_a_minute_and_survives_a_restart() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, &opts, dir.path(), "", Arc::new(SystemClock));
    authorize(&sim, &opts, &client).await; // hit 1
    for _ in 0..9 {
        client.summary(FIRST, None).await.unwrap(); // hits 2..=10
    }
    let err = client.summary(FIRST, None).await.unwrap_err();
    assert!(matches!(err, ApiError::BudgetExhausted { period: RatePeriod::Minute, .. }), "{err:?}");
    assert_eq!(hits(&sim).await.len(), 10, "the 11th call was never sent");
    assert_eq!(client.ledger().snapshot().month_used, 10);

    drop(client);
    let restarted = client_for(&sim, &opts, dir.path(), "", Arc::new(SystemClock));
    assert_eq!(restarted.ledger().snapshot().month_used, 10);
    let err = restarted.summary(FIRST, None).await.unwrap_err();
    assert!(matches!(err, ApiError::BudgetExhausted { .. }), "{err:?}");
    assert_eq!(hits(&sim).await.len(), 10);
    assert!(hits(&sim).await.iter().all(|h| h["status"] != 429), "we never reached Enphase's own limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lower_monthly_cap_is_honoured() {
    let opts = SimOptions::default();
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, &opts, dir.path(), "  hits_per_month: 3\n", Arc::new(SystemClock));
    authorize(&sim, &opts, &client).await;
    client.summary(FIRST, None).await.unwrap();
    client.summary(FIRST, None).await.unwrap();
    let err = client.summary(FIRST, None).await.unwrap_err();
    assert!(matches!(err, ApiError::BudgetExhausted { period: RatePeriod::Month, .. }), "{err:?}");
    assert_eq!(hits(&sim).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fault_maps_to_its_typed_error() {
    // Both clocks stand still, so the forced 429's period_end (the simulator's next clock minute)
    // is still ahead when the client records it, whenever the test runs.
    let opts = SimOptions { plan: SimPlan::Partner, speed: 0.0, ..SimOptions::default() };
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, &opts, dir.path(), "", ManualClock::new(sim.sim.now_ms()));
    authorize(&sim, &opts, &client).await;

    for (kind, check) in [
        ("500", (|e: &ApiError| matches!(e, ApiError::Server { status: 500, .. })) as fn(&ApiError) -> bool),
        (
            "500_alt",
            |e| matches!(e, ApiError::Server { status: 500, message } if message.contains("temporarily unavailable")),
        ),
        ("503", |e| matches!(e, ApiError::Unavailable { status: 503 } | ApiError::NotJson { status: 503, .. })),
        ("html", |e| matches!(e, ApiError::NotJson { .. })),
        ("hang", |e| matches!(e, ApiError::Timeout)),
    ] {
        admin_post(&sim, "/admin/faults", json!({"kind": kind, "count": 1})).await;
        let err = client.summary(FIRST, None).await.unwrap_err();
        assert!(check(&err), "fault {kind} gave {err:?}");
        assert!(err.is_transient(), "fault {kind} is transient");
        client.summary(FIRST, None).await.unwrap_or_else(|e| panic!("after fault {kind}: {e:?}"));
    }

    let err = client.summary(4_219_999, None).await.unwrap_err();
    assert!(matches!(&err, ApiError::NotFound { details } if details.contains("4219999")), "{err:?}");
    let err = client.summary(FIRST, Some("2999-01-01")).await.unwrap_err();
    assert!(matches!(err, ApiError::InvalidRequest { status: 422, .. }), "{err:?}");

    // A 429 blocks the client until Enphase's period_end: the next call is refused locally.
    admin_post(&sim, "/admin/force429", json!({"period": "minute", "count": 1})).await;
    let err = client.summary(FIRST, None).await.unwrap_err();
    let ApiError::RateLimited { period: Some(RatePeriod::Minute), period_end: Some(end), .. } = err else {
        panic!("{err:?}")
    };
    let sent = hits(&sim).await.len();
    let err = client.summary(FIRST, None).await.unwrap_err();
    assert!(matches!(err, ApiError::BudgetExhausted { until_ms, .. } if until_ms == end * 1000), "{err:?}");
    assert_eq!(hits(&sim).await.len(), sent, "nothing is sent before period_end");
}

#[tokio::test(flavor = "multi_thread")]
async fn all_systems_reads_every_page_and_each_kind_of_site() {
    let opts = SimOptions { systems: 23, plan: SimPlan::Partner, ..SimOptions::default() };
    let sim = sim(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&sim, &opts, dir.path(), "", Arc::new(SystemClock));
    authorize(&sim, &opts, &client).await;
    let systems = client.all_systems().await.unwrap();
    assert_eq!(systems.len(), 23);
    let ids: std::collections::BTreeSet<_> = systems.iter().filter_map(|s| s.system_id).collect();
    assert_eq!(ids.len(), 23, "no system twice");
    assert!(systems.iter().all(|s| s.timezone.is_some()));

    // Every endpoint a bridge reads parses from the simulator for every kind of site.
    for id in ids.iter().take(4) {
        let id = *id;
        let devices = client.devices(id).await.unwrap();
        let summary = client.summary(id, None).await.unwrap();
        assert!(summary.energy_lifetime.unwrap_or(0) > 0, "system {id} has produced before");
        client.latest_telemetry(id).await.unwrap();
        client.production_micro(id, TelemetryQuery::default()).await.unwrap();
        client.inverters_summary(id).await.unwrap();
        client.open_events(id).await.unwrap();
        client.open_alarms(id).await.unwrap();
        if !devices.devices.meters.is_empty() {
            client.production_meter(id, TelemetryQuery::default()).await.unwrap();
            client.consumption_meter(id, TelemetryQuery::default()).await.unwrap();
            client.production_meter_readings(id, None).await.unwrap();
            client.consumption_meter_readings(id, None).await.unwrap();
            client.import_telemetry(id, TelemetryQuery::default()).await.unwrap();
            client.export_telemetry(id, TelemetryQuery::default()).await.unwrap();
        }
        if !devices.devices.encharges.is_empty() {
            let battery = client.battery_telemetry(id, TelemetryQuery::default()).await.unwrap();
            assert!(battery.last_reported_aggregate_soc.is_some_and(|soc| soc <= 100));
            client.storage_meter_readings(id, None).await.unwrap();
        }
    }
}
