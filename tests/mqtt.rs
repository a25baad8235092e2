//! The MQTT side against a real Mosquitto: the `enphase-mqtt run` process, the simulator over
//! loopback HTTP, and a test client reading back what the broker holds.

mod common;

use std::time::Duration;

use common::broker::{Broker, BrokerTls, Probe, free_port, retained};
use common::*;
use enphase_mqtt::simulator::{SimHandle, SimOptions, SimPlan};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const A: u64 = 4_210_001;
const B: u64 = 4_210_002;
const C: u64 = 4_210_003;

/// The simulator, a logged-in config and a broker.
struct Rig {
    sim: SimHandle,
    setup: Setup,
    broker: Broker,
}

impl Rig {
    async fn new(systems: usize, mqtt_extra: &str) -> Self {
        Self::with_broker(systems, mqtt_extra, Broker::start(), "").await
    }

    async fn with_broker(systems: usize, mqtt_extra: &str, broker: Broker, enphase_extra: &str) -> Self {
        let opts = SimOptions { systems, plan: SimPlan::Partner, ..SimOptions::default() };
        let sim = sim(opts.clone()).await;
        let enphase = format!(
            "  auth:\n    flow: password\n    username: {}\n    password: {}\n  min_poll_interval_secs: 2\n{enphase_extra}",
            opts.username, opts.password
        );
        let mqtt = format!("mqtt:\n  host: 127.0.0.1\n  port: {}\n  keep_alive: 5\n{mqtt_extra}", broker.port);
        let setup = Setup::with_top(&sim, &opts, &enphase, &mqtt);
        let login = setup.run(&["auth", "login"]).await;
        assert_eq!(login.code, Some(0), "{login:?}");
        Self { sim, setup, broker }
    }

    fn start(&self) -> Daemon {
        Daemon::spawn(&self.setup)
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Waits until the broker holds a state for every system in `ids`; returns the retained map.
async fn settled(port: u16, ids: &[u64]) -> std::collections::BTreeMap<String, String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let held = retained(port, &["enphase/#", "homeassistant/#"]).await;
        let ok = ids.iter().all(|id| held.contains_key(&format!("enphase/{id}/state")))
            && held.get("enphase/bridge/availability").map(String::as_str) == Some("online");
        if ok {
            return held;
        }
        assert!(tokio::time::Instant::now() < deadline, "broker never held states for {ids:?}: {:?}", held.keys());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn first_start_publishes_discovery_states_and_availability_for_a_mixed_fleet() {
    let rig = Rig::new(3, "").await;
    let bridge = rig.start();
    let held = settled(rig.broker.port, &[A, B, C]).await;

    // Every system: device configs, an online availability, a JSON state.
    for id in [A, B, C] {
        assert_eq!(held[&format!("enphase/{id}/availability")], "online");
        let state = json(&held[&format!("enphase/{id}/state")]);
        assert_eq!(state["system_id"], id);
        assert!(state["production_power_w"].is_i64(), "{state}");
        let power = &held[&format!("homeassistant/sensor/enphase_{id}/production_power/config")];
        let config = json(power);
        assert_eq!(config["unique_id"], format!("enphase_{id}_production_power"));
        assert_eq!(config["state_topic"], format!("enphase/{id}/state"));
        assert_eq!(config["availability_mode"], "all");
        assert_eq!(config["device"]["manufacturer"], "Enphase Energy");
    }
    // The metered site (B) has consumption and grid entities, the micro-only one (A) has none.
    assert!(held.contains_key(&format!("homeassistant/sensor/enphase_{B}/consumption_power/config")));
    assert!(!held.keys().any(|t| t.starts_with(&format!("homeassistant/sensor/enphase_{A}/consumption"))));
    // The battery site (C) has state of charge.
    let soc = json(&held[&format!("homeassistant/sensor/enphase_{C}/battery_soc/config")]);
    assert_eq!(soc["device_class"], "battery");
    // Microinverters are devices of their own, linked to the site.
    let inverter = held
        .iter()
        .find(|(t, _)| t.starts_with(&format!("homeassistant/sensor/enphase_{A}_")) && t.ends_with("/power/config"))
        .map(|(_, p)| json(p))
        .expect("an inverter power config");
    assert_eq!(inverter["device"]["via_device"], format!("enphase_{A}"));
    // The bridge device and its info.
    assert!(held.contains_key("homeassistant/button/enphase_bridge/refresh/config"));
    let info = json(&held["enphase/bridge/info"]);
    assert_eq!(info["plan"], "partner");
    assert!(info["hits_month_used"].as_u64().unwrap() > 0);

    assert_eq!(bridge.sigterm().await, Some(0));
    let after = retained(rig.broker.port, &["enphase/bridge/availability"]).await;
    assert_eq!(after["enphase/bridge/availability"], "offline", "SIGTERM publishes offline");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_will_fires_when_the_bridge_process_is_killed() {
    let rig = Rig::new(1, "").await;
    let mut bridge = rig.start();
    settled(rig.broker.port, &[A]).await;
    let mut probe = Probe::connect(rig.broker.port, &["enphase/bridge/availability"]).await;
    probe.wait_for(WAIT, "retained online", |_, p| p == "online").await;
    bridge.child.start_kill().unwrap(); // SIGKILL: no goodbye, only the broker's will
    bridge.child.wait().await.unwrap();
    probe.wait_for(WAIT, "the last will", |_, p| p == "offline").await;
    let held = retained(rig.broker.port, &["enphase/bridge/availability"]).await;
    assert_eq!(held["enphase/bridge/availability"], "offline", "the will is retained");
}

#[tokio::test(flavor = "multi_thread")]
async fn home_assistant_birth_brings_discovery_and_states_again() {
    let rig = Rig::new(1, "").await;
    let bridge = rig.start();
    settled(rig.broker.port, &[A]).await;
    let mut probe = Probe::connect(rig.broker.port, &["homeassistant/+/+/+/config", "enphase/+/state"]).await;
    probe.drain(Duration::from_millis(800)).await; // the retained copies
    // Home Assistant restarted: its birth message is not retained.
    probe.publish("homeassistant/status", "online", false).await;
    let again = probe.drain(Duration::from_millis(1500)).await;
    assert!(
        again.contains_key(&format!("homeassistant/sensor/enphase_{A}/production_power/config")),
        "{:?}",
        again.keys()
    );
    assert!(again.contains_key("homeassistant/button/enphase_bridge/refresh/config"));
    assert!(again.contains_key(&format!("enphase/{A}/state")));
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broker_restart_is_reconnected_with_growing_delays_and_states_come_back() {
    let mut rig = Rig::new(1, "").await;
    let bridge = rig.start();
    settled(rig.broker.port, &[A]).await;
    rig.broker.stop();
    // Long enough for several failed attempts: 1–2 s, 2–4 s, 4–8 s apart.
    tokio::time::sleep(Duration::from_secs(8)).await;
    rig.broker.restart(); // no persistence: the broker comes back empty
    let held = settled(rig.broker.port, &[A]).await;
    assert!(held.contains_key(&format!("homeassistant/sensor/enphase_{A}/production_power/config")));
    let log = bridge.log();
    let delays: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("MQTT connection lost"))
        .filter_map(|l| l.split("retry_in=").nth(1))
        .filter_map(|d| d.split_whitespace().next())
        .filter_map(|d| d.trim_end_matches('s').parse::<f64>().ok())
        .collect();
    assert!(delays.len() >= 2, "several reconnect attempts were logged: {log}");
    assert!(delays[0] <= 2.0, "the first wait is short: {delays:?}");
    assert!(delays.last().unwrap() > &delays[0], "the waits grow: {delays:?}");
    assert_eq!(bridge.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn orphaned_configs_are_cleared_and_others_left_alone() {
    // First run bridges two systems; the second only one: the other's entities must go.
    let rig = Rig::with_broker(2, "", Broker::start(), "").await;
    let first = rig.start();
    let held = settled(rig.broker.port, &[A, B]).await;
    assert!(held.contains_key(&format!("homeassistant/sensor/enphase_{B}/production_power/config")));
    assert_eq!(first.sigterm().await, Some(0));

    let probe = Probe::connect(rig.broker.port, &[]).await;
    let stale = format!("homeassistant/sensor/enphase_{A}/retired_entity/config");
    probe.publish(&stale, r#"{"name":"old"}"#, true).await;
    probe.publish("homeassistant/sensor/someone_else/power/config", r#"{"name":"theirs"}"#, true).await;
    let text = std::fs::read_to_string(&rig.setup.config).unwrap();
    std::fs::write(
        &rig.setup.config,
        text.replace("  min_poll_interval_secs: 2\n", &format!("  min_poll_interval_secs: 2\n  systems: [{A}]\n")),
    )
    .unwrap();

    let second = rig.start();
    settled(rig.broker.port, &[A]).await;
    // The clean-up window is 3 s after the first connect.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let held = retained(rig.broker.port, &["homeassistant/#", "enphase/#"]).await;
    assert!(!held.keys().any(|t| t.contains(&format!("enphase_{B}"))), "B's configs cleared: {:?}", held.keys());
    assert!(!held.contains_key(&format!("enphase/{B}/state")), "B's state cleared");
    assert!(!held.contains_key(&stale), "an entity this run does not produce is cleared");
    assert!(held.contains_key("homeassistant/sensor/someone_else/power/config"), "other integrations are left alone");
    assert!(held.contains_key(&format!("homeassistant/sensor/enphase_{A}/production_power/config")));
    assert_eq!(second.sigterm().await, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn device_mode_publishes_one_config_per_device() {
    let rig = Rig::new(1, "  discovery_mode: device\n").await;
    let bridge = rig.start();
    let held = settled(rig.broker.port, &[A]).await;
    let site = json(&held[&format!("homeassistant/device/enphase_{A}/config")]);
    assert_eq!(site["device"]["identifiers"][0], format!("enphase_{A}"));
    assert_eq!(site["origin"]["name"], "enphase-mqtt");
    let cmps = site["cmps"].as_object().expect("cmps");
    let power =
        cmps.values().find(|c| c["unique_id"] == format!("enphase_{A}_production_power")).expect("power component");
    assert_eq!(power["platform"], "sensor");
    assert!(held.contains_key("homeassistant/device/enphase_bridge/config"));
    assert!(
        !held.keys().any(|t| t.starts_with("homeassistant/sensor/")),
        "no per-entity configs in device mode: {:?}",
        held.keys()
    );
    assert_eq!(bridge.sigterm().await, Some(0));
}

/// The first state and the first device config each system gets already carry its readings and
/// all its entities: a state without figures would replace the full one the broker kept from the
/// last run, and Home Assistant 2026.2 drops the components added to a device config published
/// again while the first is still being set up.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_state_and_device_config_of_each_system_are_whole() {
    let rig = Rig::new(3, "  discovery_mode: device\n").await;
    let mut probe = Probe::connect(rig.broker.port, &["enphase/+/state", "homeassistant/device/+/config"]).await;
    let bridge = rig.start();
    settled(rig.broker.port, &[A, B, C]).await;
    let mut seen: Vec<(String, String)> = Vec::new();
    while let Some((topic, payload, _)) = probe.next(Duration::from_secs(2)).await {
        seen.push((topic, payload));
    }
    assert_eq!(bridge.sigterm().await, Some(0));
    let first = |topic: &str| {
        seen.iter().find(|(t, _)| t == topic).map(|(_, p)| json(p)).unwrap_or_else(|| panic!("nothing on {topic}"))
    };
    for id in [A, B, C] {
        let state = first(&format!("enphase/{id}/state"));
        assert!(state["production_power_w"].is_i64(), "the first state of {id} has the power: {state}");
        let topic = format!("homeassistant/device/enphase_{id}/config");
        let configs = seen.iter().filter(|(t, _)| *t == topic).count();
        assert_eq!(configs, 1, "{id}'s device config is published once, whole");
    }
    let has = |id: u64, key: &str| {
        let config = first(&format!("homeassistant/device/enphase_{id}/config"));
        config["cmps"].as_object().expect("cmps").keys().any(|k| k == key)
    };
    assert!(has(B, "consumption_power"), "the metered site's meters are in its first config");
    assert!(has(C, "battery_soc"), "the battery site's battery is in its first config");
    assert!(first(&format!("enphase/{B}/state"))["consumption_power_w"].is_i64(), "and in its first state");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_refresh_request_polls_now_and_answers() {
    let rig = Rig::new(1, "").await;
    let bridge = rig.start();
    settled(rig.broker.port, &[A]).await;
    let mut probe = Probe::connect(rig.broker.port, &["enphase/bridge/response/refresh"]).await;
    let before = hits(&rig.sim).await.len();
    probe.publish("enphase/bridge/request/refresh", &format!("{{\"system_id\": {A}}}"), false).await;
    let (_, answer) = probe.wait_for(WAIT, "the refresh answer", |_, _| true).await;
    let answer = json(&answer);
    assert_eq!(answer["ok"], true, "{answer}");
    assert!(hits(&rig.sim).await.len() > before, "the refresh polled Enphase");
    probe.publish("enphase/bridge/request/refresh", "not json", false).await;
    let (_, bad) = probe.wait_for(WAIT, "the refusal", |_, _| true).await;
    assert_eq!(json(&bad)["ok"], false);
    assert_eq!(bridge.sigterm().await, Some(0));
}

/// A CA, and a server certificate for 127.0.0.1 signed by it, in `dir`.
fn make_tls(dir: &std::path::Path) -> BrokerTls {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let tls = BrokerTls { ca: dir.join("ca.pem"), cert: dir.join("server.pem"), key: dir.join("server.key") };
    std::fs::write(&tls.ca, ca.pem()).unwrap();
    std::fs::write(&tls.cert, cert.pem()).unwrap();
    std::fs::write(&tls.key, key.serialize_pem()).unwrap();
    tls
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_a_ca_the_test_makes() {
    let dir = tempfile::tempdir().unwrap();
    let tls = make_tls(dir.path());
    let broker = Broker::start_with(free_port(), Some(tls.clone()));
    let mqtt = format!("  tls:\n    ca_file: {}\n", tls.ca.display());
    let rig = Rig::with_broker(1, &mqtt, broker, "").await;
    let bridge = rig.start();
    let mut probe = TlsProbe::connect(rig.broker.port, &tls.ca).await;
    let state = probe.wait_for_state(A).await;
    assert_eq!(json(&state)["system_id"], A);
    assert_eq!(bridge.sigterm().await, Some(0));
}

/// A test client over TLS (the plain `Probe` cannot reach a TLS-only broker).
struct TlsProbe {
    rx: tokio::sync::mpsc::UnboundedReceiver<(String, String)>,
}

impl TlsProbe {
    async fn connect(port: u16, ca: &std::path::Path) -> Self {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut opts = MqttOptions::new("tls-probe", "127.0.0.1", port);
        opts.set_transport(Transport::Tls(TlsConfiguration::Simple {
            ca: std::fs::read(ca).unwrap(),
            alpn: None,
            client_auth: None,
        }));
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        client.subscribe("enphase/+/state", QoS::AtLeastOnce).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let _client = client;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic, String::from_utf8_lossy(&p.payload).into_owned()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        Self { rx }
    }

    async fn wait_for_state(&mut self, id: u64) -> String {
        let topic = format!("enphase/{id}/state");
        tokio::time::timeout(WAIT, async {
            loop {
                let (t, p) = self.rx.recv().await.expect("probe runs");
                if t == topic {
                    return p;
                }
            }
        })
        .await
        .expect("a state over TLS")
    }
}
