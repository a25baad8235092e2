//! Turns a [`SiteSnapshot`] into retained Home Assistant discovery configs, driven by the tables in
//! `entities.rs`. Pure: no I/O; the bridge publishes the [`Message`]s (QoS 1) and keeps track of
//! what it announced, using [`stale_removals`] to clear what has gone.
//!
//! Two shapes, chosen by `discovery_mode`:
//! - `entity`: one config per entity at `<prefix>/<component>/<node_id>/<object_id>/config`, each
//!   carrying `device`, `origin`, `availability` and `state_topic`. Accepted by HA 2024.3 on (older
//!   versions silently drop `default_entity_id`, which HA 2025.10 uses instead of `object_id`).
//! - `device`: one config per device at `<prefix>/device/<node_id>/config` with the shared
//!   `device`, `origin`, `availability` and `state_topic` on top and the entities in `cmps`
//!   (HA ≥ 2024.11, core PR #118757). Only the keys HA's device schema knows go on top.
//!
//! Devices: one per system (`enphase_<id>`), one per microinverter (`enphase_<id>_<serial>`,
//! linked with `via_device`) and the bridge (`enphase_bridge`). System and inverter entities are
//! available when both the bridge and the system are (`availability_mode: all`); the bridge's
//! only need the bridge.

use serde_json::{Map, Value, json};

use super::entities::{self, BRIDGE_ENTITIES, Component, EntitySpec, INVERTER_ENTITIES, REFRESH_PAYLOAD};
use super::{Message, Topics};
use crate::config::DiscoveryMode;
use crate::model::{InverterReading, SiteSnapshot};

/// `origin.name`.
pub const ORIGIN_NAME: &str = "enphase-mqtt";
/// Manufacturer of the system and microinverter devices.
pub const MANUFACTURER: &str = "Enphase Energy";

/// The `origin` block every config carries: who published it.
pub fn origin() -> Value {
    json!({
        "name": ORIGIN_NAME,
        "sw_version": env!("CARGO_PKG_VERSION"),
        "support_url": env!("CARGO_PKG_REPOSITORY"),
    })
}

/// Retained configs for the system and each of its microinverters: one per entity, or one per
/// device in `device` mode. Entities the system lacks the hardware for are left out.
pub fn site_configs(snapshot: &SiteSnapshot, topics: &Topics, mode: DiscoveryMode) -> Vec<Message> {
    let mut devices = vec![site_device(snapshot, topics)];
    devices.extend(snapshot.inverters.iter().map(|inverter| inverter_device(snapshot, inverter, topics)));
    devices.iter().flat_map(|device| device.messages(topics, mode)).collect()
}

/// Retained configs for the bridge device: API hits used and left, authorization, next poll, and
/// the Refresh button.
pub fn bridge_configs(topics: &Topics, mode: DiscoveryMode) -> Vec<Message> {
    let device = DeviceDiscovery {
        node: Topics::bridge_node().to_owned(),
        device: json!({
            "identifiers": [Topics::bridge_node()],
            "name": "Enphase MQTT bridge",
            "manufacturer": ORIGIN_NAME,
            "model": "Bridge",
            "sw_version": env!("CARGO_PKG_VERSION"),
        }),
        availability: vec![topics.bridge_availability()],
        state_topic: topics.bridge_info(),
        entities: BRIDGE_ENTITIES.iter().collect(),
    };
    device.messages(topics, mode)
}

/// The empty retained config that removes an entity or device from Home Assistant.
pub fn removal(config_topic: impl Into<String>) -> Message {
    Message::removal(config_topic)
}

/// Removals for the retained configs found at start-up (`retained`, e.g. read through
/// [`Topics::discovery_filters`]) that are ours but no longer announced in `current`. This also
/// clears the old shape after switching `discovery_mode`.
pub fn stale_removals<'a>(
    retained: impl IntoIterator<Item = &'a str>,
    current: &[Message],
    topics: &Topics,
) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::new();
    for topic in retained {
        let announced = current.iter().any(|m| m.topic == topic && !m.payload.is_empty());
        if topics.is_our_discovery_topic(topic) && !announced && !out.iter().any(|m| m.topic == topic) {
            out.push(removal(topic));
        }
    }
    out
}

/// HA's `{"migrate_discovery": true}` marker (HA ≥ 2024.11), sent to a per-entity config topic
/// before the device config that takes the entity over, so the entity keeps its id and history;
/// clear the old topic with [`removal`] afterwards.
pub fn migration_marker(config_topic: impl Into<String>) -> Message {
    Message::retained(config_topic, json!({"migrate_discovery": true}).to_string())
}

/// One device and the entities it carries.
struct DeviceDiscovery {
    node: String,
    device: Value,
    availability: Vec<String>,
    state_topic: String,
    entities: Vec<&'static EntitySpec>,
}

impl DeviceDiscovery {
    fn messages(&self, topics: &Topics, mode: DiscoveryMode) -> Vec<Message> {
        match mode {
            DiscoveryMode::Entity => self
                .entities
                .iter()
                .map(|spec| {
                    let mut config = self.shared();
                    if spec.component == Component::Button {
                        // A button has no state; HA's button schema does not take a state topic.
                        config.remove("state_topic");
                    }
                    config.extend(component_config(spec, &self.node, topics));
                    Message::retained(
                        topics.entity_config(spec.component.as_str(), &self.node, spec.key),
                        Value::Object(config).to_string(),
                    )
                })
                .collect(),
            DiscoveryMode::Device => {
                // Home Assistant gives every component the state topic on top, a button too,
                // whose schema has none: with a button the topic goes to the others one by one.
                let has_button = self.entities.iter().any(|spec| spec.component == Component::Button);
                let mut cmps = Map::new();
                for spec in &self.entities {
                    let mut config = Map::new();
                    config.insert("platform".into(), spec.component.as_str().into());
                    if has_button && spec.component != Component::Button {
                        config.insert("state_topic".into(), self.state_topic.clone().into());
                    }
                    config.extend(component_config(spec, &self.node, topics));
                    cmps.insert(spec.key.into(), Value::Object(config));
                }
                let mut config = self.shared();
                if has_button {
                    config.remove("state_topic");
                }
                config.insert("cmps".into(), Value::Object(cmps));
                vec![Message::retained(topics.device_config(&self.node), Value::Object(config).to_string())]
            }
        }
    }

    /// What every entity of the device shares: `device`, `origin`, `availability`, `state_topic`.
    fn shared(&self) -> Map<String, Value> {
        let availability: Vec<Value> = self.availability.iter().map(|topic| json!({"topic": topic})).collect();
        let mut config = Map::new();
        config.insert("device".into(), self.device.clone());
        config.insert("origin".into(), origin());
        config.insert("availability".into(), Value::Array(availability));
        config.insert("availability_mode".into(), "all".into());
        config.insert("state_topic".into(), self.state_topic.clone().into());
        config
    }
}

/// The entity's own keys, the same in both modes.
fn component_config(spec: &EntitySpec, node: &str, topics: &Topics) -> Map<String, Value> {
    let mut config = Map::new();
    config.insert("unique_id".into(), Topics::unique_id(node, spec.key).into());
    config
        .insert("default_entity_id".into(), Topics::default_entity_id(spec.component.as_str(), node, spec.key).into());
    config.insert("name".into(), spec.name.into());
    let optional = [
        ("device_class", spec.device_class),
        ("state_class", spec.state_class),
        ("unit_of_measurement", spec.unit),
        ("entity_category", spec.category),
        ("icon", spec.icon),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            config.insert(key.into(), value.into());
        }
    }
    if let Some(precision) = spec.precision {
        config.insert("suggested_display_precision".into(), precision.into());
    }
    if let Some(secs) = spec.expire_after {
        config.insert("expire_after".into(), secs.into());
    }
    if let Some(template) = spec.value_template() {
        config.insert("value_template".into(), template.into());
    }
    if spec.component == Component::Button {
        config.insert("command_topic".into(), topics.refresh_request().into());
        config.insert("payload_press".into(), REFRESH_PAYLOAD.into());
        // A lost press would go unnoticed; HA sends commands with QoS 0 unless told.
        config.insert("qos".into(), 1.into());
    }
    config
}

fn site_device(snapshot: &SiteSnapshot, topics: &Topics) -> DeviceDiscovery {
    let node = Topics::site_node(snapshot.system_id);
    let gateway = snapshot.gateway.as_ref();
    let model = gateway
        .and_then(|g| g.model.clone())
        .or_else(|| snapshot.public_name.clone())
        .unwrap_or_else(|| "Enlighten system".to_owned());
    let mut device = json!({
        "identifiers": [node],
        "name": snapshot.display_name(),
        "manufacturer": MANUFACTURER,
        "model": model,
        "configuration_url": snapshot.configuration_url,
    });
    if let Some(firmware) = gateway.and_then(|g| g.firmware.as_deref()) {
        device["sw_version"] = firmware.into();
    }
    if let Some(serial) = gateway.and_then(|g| g.serial.as_deref()) {
        device["serial_number"] = serial.into();
    }
    DeviceDiscovery {
        availability: vec![topics.bridge_availability(), topics.system_availability(snapshot.system_id)],
        state_topic: topics.system_state(snapshot.system_id),
        entities: entities::site_entities(snapshot).collect(),
        node,
        device,
    }
}

fn inverter_device(snapshot: &SiteSnapshot, inverter: &InverterReading, topics: &Topics) -> DeviceDiscovery {
    let node = Topics::inverter_node(snapshot.system_id, &inverter.serial);
    DeviceDiscovery {
        device: json!({
            "identifiers": [node],
            "name": format!("Microinverter {}", inverter.serial),
            "manufacturer": MANUFACTURER,
            "model": inverter.model.clone().unwrap_or_else(|| "Microinverter".to_owned()),
            "serial_number": inverter.serial,
            "via_device": Topics::site_node(snapshot.system_id),
            "configuration_url": snapshot.configuration_url,
        }),
        availability: vec![topics.bridge_availability(), topics.system_availability(snapshot.system_id)],
        state_topic: topics.inverter_state(snapshot.system_id, &inverter.serial),
        entities: INVERTER_ENTITIES.iter().collect(),
        node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enlighten::Plan;
    use crate::home_assistant::entities::SITE_ENTITIES;
    use crate::home_assistant::state::{bridge_info_json, inverter_state_json, site_state_json};
    use crate::home_assistant::template::render;
    use crate::model::fixtures::{system_a, system_b};
    use crate::model::{BridgeStatus, SiteSnapshot};

    fn topics() -> Topics {
        Topics::new("enphase", "homeassistant")
    }

    fn parse(message: &Message) -> Value {
        serde_json::from_str(&message.payload).unwrap_or_else(|e| panic!("{}: {e}", message.topic))
    }

    /// The entity-mode config of `key` among `messages`, found by its unique id.
    fn config_for(messages: &[Message], unique_id: &str) -> (String, Value) {
        let found: Vec<_> = messages.iter().filter(|m| parse(m)["unique_id"] == unique_id).collect();
        assert_eq!(found.len(), 1, "exactly one config for {unique_id}");
        (found[0].topic.clone(), parse(found[0]))
    }

    /// What a site or inverter entity must look like: (key, component, device_class, state_class,
    /// unit, precision, category, icon, value rendered against system B's state (A's for inverters)).
    type Expected = (
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<&'static str>,
        Option<u64>,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );

    const SITE_EXPECTED: &[Expected] = &[
        ("production_power", "sensor", Some("power"), Some("measurement"), Some("W"), Some(0), None, None, "640"),
        (
            "production_energy_today",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "0.316",
        ),
        (
            "production_energy_lifetime",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "8413.221",
        ),
        ("consumption_power", "sensor", Some("power"), Some("measurement"), Some("W"), Some(0), None, None, "1680"),
        (
            "consumption_energy_lifetime",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "9871.342",
        ),
        ("grid_power", "sensor", Some("power"), Some("measurement"), Some("W"), Some(0), None, None, "880"),
        (
            "grid_import_energy",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "62.58",
        ),
        (
            "grid_export_energy",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "19.865",
        ),
        ("battery_soc", "sensor", Some("battery"), Some("measurement"), Some("%"), Some(0), None, None, "27"),
        ("battery_power", "sensor", Some("power"), Some("measurement"), Some("W"), Some(0), None, None, "160"),
        (
            "battery_charged_energy",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "1374.36",
        ),
        (
            "battery_discharged_energy",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "1226.89",
        ),
        ("status", "sensor", None, None, None, None, None, Some("mdi:information-outline"), "normal"),
        ("last_report", "sensor", Some("timestamp"), None, None, None, None, None, "2025-06-16T22:01:07+00:00"),
        ("problem", "binary_sensor", Some("problem"), None, None, None, None, None, "OFF"),
        ("array_size", "sensor", Some("power"), None, Some("W"), Some(0), Some("diagnostic"), None, "4680"),
        ("microinverter_count", "sensor", None, None, None, None, Some("diagnostic"), Some("mdi:solar-panel"), "12"),
        (
            "gateway_firmware",
            "sensor",
            None,
            None,
            None,
            None,
            Some("diagnostic"),
            Some("mdi:chip"),
            "D8.2.4345 (b3c6a2)",
        ),
    ];

    const INVERTER_EXPECTED: &[Expected] = &[
        ("power", "sensor", Some("power"), Some("measurement"), Some("W"), Some(0), None, None, "118"),
        (
            "energy_lifetime",
            "sensor",
            Some("energy"),
            Some("total_increasing"),
            Some("kWh"),
            Some(2),
            None,
            None,
            "1687.342",
        ),
    ];

    fn assert_entity_fields(config: &Value, expected: &Expected) {
        let (key, _, device_class, state_class, unit, precision, category, icon, _) = *expected;
        let field = |name: &str| config.get(name).and_then(Value::as_str);
        assert_eq!(field("device_class"), device_class, "{key}: device_class");
        assert_eq!(field("state_class"), state_class, "{key}: state_class");
        assert_eq!(field("unit_of_measurement"), unit, "{key}: unit");
        assert_eq!(config.get("suggested_display_precision").and_then(Value::as_u64), precision, "{key}: precision");
        assert_eq!(field("entity_category"), category, "{key}: entity_category");
        assert_eq!(field("icon"), icon, "{key}: icon");
        assert!(field("name").is_some_and(|n| !n.is_empty()), "{key}: name");
        assert!(config.get("object_id").is_none(), "{key}: the deprecated object_id is not sent");
    }

    fn assert_origin(config: &Value) {
        assert_eq!(
            config["origin"],
            json!({"name": "enphase-mqtt", "sw_version": env!("CARGO_PKG_VERSION"), "support_url": env!("CARGO_PKG_REPOSITORY")})
        );
    }

    fn site_availability(id: u64) -> Value {
        json!([{"topic": "enphase/bridge/availability"}, {"topic": format!("enphase/{id}/availability")}])
    }

    #[test]
    fn the_expectations_cover_every_table_row() {
        let keys = |table: &[EntitySpec]| table.iter().map(|s| s.key).collect::<Vec<_>>();
        let expected = |table: &[Expected]| table.iter().map(|e| e.0).collect::<Vec<_>>();
        assert_eq!(keys(SITE_ENTITIES), expected(SITE_EXPECTED));
        assert_eq!(keys(INVERTER_ENTITIES), expected(INVERTER_EXPECTED));
    }

    #[test]
    fn every_site_entity_config_and_value() {
        let b = system_b();
        let configs = site_configs(&b, &topics(), DiscoveryMode::Entity);
        assert_eq!(configs.len(), SITE_EXPECTED.len(), "system B has every system entity, and no inverters");
        let state = site_state_json(&b);
        for expected in SITE_EXPECTED {
            let (key, component, .., value) = *expected;
            let (topic, config) = config_for(&configs, &format!("enphase_4210002_{key}"));
            assert_eq!(topic, format!("homeassistant/{component}/enphase_4210002/{key}/config"));
            assert_eq!(config["default_entity_id"], format!("{component}.enphase_4210002_{key}"));
            assert_entity_fields(&config, expected);
            assert_eq!(config["state_topic"], "enphase/4210002/state", "{key}");
            assert_eq!(config["availability"], site_availability(4210002), "{key}");
            assert_eq!(config["availability_mode"], "all", "{key}");
            assert_origin(&config);
            assert_eq!(config["device"]["identifiers"], json!(["enphase_4210002"]), "{key}");
            let template = config["value_template"].as_str().unwrap();
            assert_eq!(render(template, &state), value, "{key}: {template}");
        }
    }

    #[test]
    fn site_device_block() {
        let (_, config) =
            config_for(&site_configs(&system_b(), &topics(), DiscoveryMode::Entity), "enphase_4210002_status");
        assert_eq!(
            config["device"],
            json!({
                "identifiers": ["enphase_4210002"],
                "name": "Harbour View Home",
                "manufacturer": "Enphase Energy",
                "model": "IQ Gateway Metered",
                "sw_version": "D8.2.4345 (b3c6a2)",
                "serial_number": "202403051877",
                "configuration_url": "https://enlighten.enphaseenergy.com/systems/4210002"
            })
        );
        // Without a device list: the public name as model, no firmware or serial to claim.
        let (_, config) =
            config_for(&site_configs(&system_a(), &topics(), DiscoveryMode::Entity), "enphase_4210001_status");
        assert_eq!(
            config["device"],
            json!({
                "identifiers": ["enphase_4210001"],
                "name": "Maple Street Solar",
                "manufacturer": "Enphase Energy",
                "model": "Residential System",
                "configuration_url": "https://enlighten.enphaseenergy.com/systems/4210001"
            })
        );
    }

    #[test]
    fn values_of_a_micro_only_system_and_missing_keys() {
        let a = system_a();
        let configs = site_configs(&a, &topics(), DiscoveryMode::Entity);
        let state = site_state_json(&a);
        let value = |key: &str| {
            let (_, config) = config_for(&configs, &format!("enphase_4210001_{key}"));
            render(config["value_template"].as_str().unwrap(), &state)
        };
        assert_eq!(value("production_power"), "4150");
        assert_eq!(value("production_energy_today"), "17.64");
        assert_eq!(value("production_energy_lifetime"), "57336.062");
        assert_eq!(value("microinverter_count"), "35");
        assert_eq!(value("last_report"), "2025-06-16T19:16:12+00:00");
        assert_eq!(value("gateway_firmware"), "None", "no device list: unknown, not empty");
        assert!(
            configs
                .iter()
                .all(|m| !m.topic.contains("consumption") && !m.topic.contains("battery") && !m.topic.contains("grid")),
            "no meter or battery entities without the hardware"
        );
        // A problem status turns the binary sensor on; no status makes it unknown.
        let mut s = a.clone();
        s.status = Some("comm".into());
        let (_, problem) = config_for(&configs, "enphase_4210001_problem");
        let template = problem["value_template"].as_str().unwrap();
        assert_eq!(render(template, &site_state_json(&s)), "ON");
        s.status = None;
        assert_eq!(render(template, &site_state_json(&s)), "None");
    }

    #[test]
    fn inverter_devices_link_to_the_site() {
        let a = system_a();
        let configs = site_configs(&a, &topics(), DiscoveryMode::Entity);
        assert_eq!(configs.len(), 9 + 3 * INVERTER_EXPECTED.len());
        let inverter = &a.inverters[0];
        let state = inverter_state_json(inverter);
        for expected in INVERTER_EXPECTED {
            let (key, component, .., value) = *expected;
            let (topic, config) = config_for(&configs, &format!("enphase_4210001_121935144671_{key}"));
            assert_eq!(topic, format!("homeassistant/{component}/enphase_4210001_121935144671/{key}/config"));
            assert_eq!(config["default_entity_id"], format!("sensor.enphase_4210001_121935144671_{key}"));
            assert_entity_fields(&config, expected);
            assert_origin(&config);
            assert_eq!(config["state_topic"], "enphase/4210001/inverters/121935144671/state");
            // The power is of the micro's last report, read after dusk: shown for an hour only.
            let expire = if key == "power" { json!(3600) } else { Value::Null };
            assert_eq!(config.get("expire_after").cloned().unwrap_or(Value::Null), expire, "{key}");
            assert_eq!(config["availability"], site_availability(4210001));
            assert_eq!(config["availability_mode"], "all");
            assert_eq!(
                config["device"],
                json!({
                    "identifiers": ["enphase_4210001_121935144671"],
                    "name": "Microinverter 121935144671",
                    "manufacturer": "Enphase Energy",
                    "model": "IQ7+",
                    "serial_number": "121935144671",
                    "via_device": "enphase_4210001",
                    "configuration_url": "https://enlighten.enphaseenergy.com/systems/4210001"
                })
            );
            assert_eq!(render(config["value_template"].as_str().unwrap(), &state), value, "{key}");
        }
    }

    #[test]
    fn odd_serials_are_sanitized_everywhere() {
        let mut a = system_a();
        a.inverters.truncate(1);
        a.inverters[0].serial = "12/34+56#".into();
        let configs = site_configs(&a, &topics(), DiscoveryMode::Entity);
        let (topic, config) = config_for(&configs, "enphase_4210001_12_34_56__power");
        assert_eq!(topic, "homeassistant/sensor/enphase_4210001_12_34_56_/power/config");
        assert_eq!(config["default_entity_id"], "sensor.enphase_4210001_12_34_56_power");
        assert_eq!(config["state_topic"], "enphase/4210001/inverters/12_34_56_/state");
        assert_eq!(config["device"]["serial_number"], "12/34+56#", "the device shows the real serial");
        assert!(configs.iter().all(|m| topics().is_our_discovery_topic(&m.topic)));
    }

    #[test]
    fn bridge_entity_configs() {
        let configs = bridge_configs(&topics(), DiscoveryMode::Entity);
        let mut status = BridgeStatus::new(Plan::Watt);
        status.hits_month_used = 321;
        status.next_poll.insert(4210001, 1750111200);
        status.next_poll.insert(4210002, 1750110300);
        let info = bridge_info_json(&status);
        let cases = [
            ("api_hits_used", "sensor", None, Some("mdi:api"), "321"),
            ("api_hits_left", "sensor", None, Some("mdi:api"), "679"),
            ("authorization", "binary_sensor", Some("problem"), None, "OFF"),
            ("next_poll", "sensor", Some("timestamp"), None, "2025-06-16T21:45:00+00:00"),
        ];
        assert_eq!(configs.len(), cases.len() + 1);
        for (key, component, device_class, icon, value) in cases {
            let (topic, config) = config_for(&configs, &format!("enphase_bridge_{key}"));
            assert_eq!(topic, format!("homeassistant/{component}/enphase_bridge/{key}/config"));
            assert_eq!(config["default_entity_id"], format!("{component}.enphase_bridge_{key}"));
            assert_eq!(config.get("device_class").and_then(Value::as_str), device_class, "{key}");
            assert_eq!(config.get("icon").and_then(Value::as_str), icon, "{key}");
            let state_class = if key.starts_with("api_hits") { Some("measurement") } else { None };
            assert_eq!(config.get("state_class").and_then(Value::as_str), state_class, "{key}");
            assert!(config.get("unit_of_measurement").is_none(), "{key}");
            assert_eq!(config["state_topic"], "enphase/bridge/info");
            assert_eq!(config["availability"], json!([{"topic": "enphase/bridge/availability"}]));
            assert_eq!(config["availability_mode"], "all");
            assert_origin(&config);
            assert_eq!(
                config["device"],
                json!({
                    "identifiers": ["enphase_bridge"],
                    "name": "Enphase MQTT bridge",
                    "manufacturer": "enphase-mqtt",
                    "model": "Bridge",
                    "sw_version": env!("CARGO_PKG_VERSION")
                })
            );
            assert_eq!(render(config["value_template"].as_str().unwrap(), &info), value, "{key}");
        }
        // Authorization is a problem when it is NOT ok.
        status.authorization_ok = false;
        let (_, config) = config_for(&configs, "enphase_bridge_authorization");
        assert_eq!(render(config["value_template"].as_str().unwrap(), &bridge_info_json(&status)), "ON");
        // No next poll planned: unknown.
        let (_, config) = config_for(&configs, "enphase_bridge_next_poll");
        assert_eq!(
            render(config["value_template"].as_str().unwrap(), &bridge_info_json(&BridgeStatus::new(Plan::Watt))),
            "None"
        );
    }

    #[test]
    fn refresh_button() {
        let configs = bridge_configs(&topics(), DiscoveryMode::Entity);
        let (topic, config) = config_for(&configs, "enphase_bridge_refresh");
        assert_eq!(topic, "homeassistant/button/enphase_bridge/refresh/config");
        assert_eq!(config["default_entity_id"], "button.enphase_bridge_refresh");
        assert_eq!(config["command_topic"], "enphase/bridge/request/refresh");
        assert_eq!(config["payload_press"], "{}");
        assert_eq!(config["qos"], 1);
        assert!(config.get("retain").is_none(), "HA's default: the press is not retained, never replayed");
        assert_eq!(config["availability"], json!([{"topic": "enphase/bridge/availability"}]));
        assert!(config.get("state_topic").is_none() && config.get("value_template").is_none());
        assert_eq!(config["device"]["identifiers"], json!(["enphase_bridge"]));
        assert_origin(&config);
    }

    #[test]
    fn device_mode_one_config_per_device() {
        let b = system_b();
        let configs = site_configs(&b, &topics(), DiscoveryMode::Device);
        assert_eq!(configs.len(), 1);
        assert_eq!(configs[0].topic, "homeassistant/device/enphase_4210002/config");
        assert!(configs[0].retain);
        let config = parse(&configs[0]);
        let top: Vec<&str> = config.as_object().unwrap().keys().map(String::as_str).collect();
        // Only keys HA's device schema allows on top (anything else makes it reject the payload).
        assert_eq!(top, ["availability", "availability_mode", "cmps", "device", "origin", "state_topic"]);
        assert_eq!(config["state_topic"], "enphase/4210002/state");
        assert_eq!(config["availability"], site_availability(4210002));
        assert_eq!(config["availability_mode"], "all");
        assert_origin(&config);
        assert_eq!(config["device"]["identifiers"], json!(["enphase_4210002"]));
        let cmps = config["cmps"].as_object().unwrap();
        assert_eq!(cmps.len(), SITE_EXPECTED.len());
        let state = site_state_json(&b);
        for expected in SITE_EXPECTED {
            let (key, component, .., value) = *expected;
            let cmp = &cmps[key];
            assert_eq!(cmp["platform"], component, "{key}");
            assert_eq!(cmp["unique_id"], format!("enphase_4210002_{key}"));
            assert_eq!(cmp["default_entity_id"], format!("{component}.enphase_4210002_{key}"));
            assert_entity_fields(cmp, expected);
            for shared in ["device", "origin", "availability", "state_topic"] {
                assert!(cmp.get(shared).is_none(), "{key}: {shared} is shared, not repeated");
            }
            assert_eq!(render(cmp["value_template"].as_str().unwrap(), &state), value, "{key}");
        }
    }

    #[test]
    fn device_mode_inverters_and_bridge() {
        let a = system_a();
        let configs = site_configs(&a, &topics(), DiscoveryMode::Device);
        let topics_of: Vec<&str> = configs.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics_of,
            [
                "homeassistant/device/enphase_4210001/config",
                "homeassistant/device/enphase_4210001_121935144671/config",
                "homeassistant/device/enphase_4210001_121935144672/config",
                "homeassistant/device/enphase_4210001_121935144673/config",
            ]
        );
        let inverter = parse(&configs[2]);
        assert_eq!(inverter["device"]["via_device"], "enphase_4210001");
        assert_eq!(inverter["state_topic"], "enphase/4210001/inverters/121935144672/state");
        assert_eq!(inverter["cmps"]["power"]["unique_id"], "enphase_4210001_121935144672_power");
        assert_eq!(inverter["cmps"]["energy_lifetime"]["platform"], "sensor");
        let state = inverter_state_json(&a.inverters[1]);
        assert_eq!(render(inverter["cmps"]["power"]["value_template"].as_str().unwrap(), &state), "121");

        let bridge = bridge_configs(&topics(), DiscoveryMode::Device);
        assert_eq!(bridge.len(), 1);
        assert_eq!(bridge[0].topic, "homeassistant/device/enphase_bridge/config");
        let config = parse(&bridge[0]);
        assert_eq!(config["availability"], json!([{"topic": "enphase/bridge/availability"}]));
        // The button's schema has no state topic, and a topic on top would be given to it too.
        assert!(config.get("state_topic").is_none(), "{config}");
        let cmps = config["cmps"].as_object().unwrap();
        let keys: Vec<&str> = cmps.keys().map(String::as_str).collect();
        assert_eq!(keys, ["api_hits_left", "api_hits_used", "authorization", "next_poll", "refresh"]);
        for key in ["api_hits_left", "api_hits_used", "authorization", "next_poll"] {
            assert_eq!(cmps[key]["state_topic"], "enphase/bridge/info", "{key}");
        }
        assert!(cmps["refresh"].get("state_topic").is_none());
        assert_eq!(cmps["refresh"]["platform"], "button");
        assert_eq!(cmps["refresh"]["command_topic"], "enphase/bridge/request/refresh");
        assert_eq!(cmps["authorization"]["platform"], "binary_sensor");
    }

    #[test]
    fn every_config_is_retained_unique_and_ours() {
        for mode in [DiscoveryMode::Entity, DiscoveryMode::Device] {
            let mut all = site_configs(&system_a(), &topics(), mode);
            all.extend(site_configs(&system_b(), &topics(), mode));
            all.extend(bridge_configs(&topics(), mode));
            let mut seen = std::collections::BTreeSet::new();
            for message in &all {
                assert!(message.retain && !message.payload.is_empty(), "{}", message.topic);
                assert!(seen.insert(message.topic.clone()), "duplicate {}", message.topic);
                assert!(topics().is_our_discovery_topic(&message.topic), "{}", message.topic);
            }
        }
    }

    #[test]
    fn removals_of_what_is_gone() {
        let t = topics();
        let current = site_configs(&system_a(), &t, DiscoveryMode::Entity);
        let retained = [
            "homeassistant/sensor/enphase_4210001/production_power/config", // still announced
            "homeassistant/sensor/enphase_4210001/consumption_power/config", // gone
            "homeassistant/device/enphase_4210001/config",                  // the other mode
            "homeassistant/sensor/enphase_4210001/consumption_power/config", // duplicate
            "homeassistant/sensor/zigbee2mqtt_0x1/power/config",            // not ours
        ];
        let removals = stale_removals(retained, &current, &t);
        let topics_of: Vec<&str> = removals.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics_of,
            [
                "homeassistant/sensor/enphase_4210001/consumption_power/config",
                "homeassistant/device/enphase_4210001/config"
            ]
        );
        assert!(removals.iter().all(|m| m.retain && m.payload.is_empty() && m.is_removal()));
        let marker = migration_marker("homeassistant/sensor/enphase_1/x/config");
        assert_eq!(marker.payload, r#"{"migrate_discovery":true}"#);
        assert!(marker.retain);
    }

    #[test]
    fn entity_set_is_stable_across_partial_polls() {
        // A poll that carried no readings at all still announces what the hardware supports.
        let mut b = system_b();
        b.production = Default::default();
        b.consumption = Default::default();
        b.grid = Default::default();
        b.battery = Default::default();
        let topics_of = |s: &SiteSnapshot| {
            site_configs(s, &topics(), DiscoveryMode::Entity).into_iter().map(|m| m.topic).collect::<Vec<_>>()
        };
        assert_eq!(topics_of(&b), topics_of(&system_b()));
    }
}
