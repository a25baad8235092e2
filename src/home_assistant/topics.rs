//! Every MQTT topic string, node id, `unique_id` and `default_entity_id` is built here.
//!
//! Under the base topic (`enphase` by default):
//!
//! | topic                                   | payload                                   |
//! |-----------------------------------------|-------------------------------------------|
//! | `<base>/bridge/availability`            | `online` / `offline` (last will)          |
//! | `<base>/bridge/info`                    | bridge JSON (version, plan, hits, …)      |
//! | `<base>/bridge/request/refresh`         | the Refresh button presses here           |
//! | `<base>/bridge/response/refresh`        | the bridge's answer                       |
//! | `<base>/<system_id>/state`              | one JSON per system                       |
//! | `<base>/<system_id>/availability`       | `online` / `offline`                      |
//! | `<base>/<system_id>/inverters/<serial>/state` | one JSON per microinverter          |
//!
//! Under the discovery prefix (`homeassistant`): `<prefix>/<component>/<node_id>/<object_id>/config`
//! per entity, or `<prefix>/device/<node_id>/config` per device, and HA's birth topic `<prefix>/status`.
//! Node ids are `enphase_<system_id>`, `enphase_<system_id>_<serial>` and `enphase_bridge`.

/// Prefix of every node id we announce; `is_our_discovery_topic` relies on it.
pub const NODE_PREFIX: &str = "enphase_";
/// The bridge's node id.
pub const BRIDGE_NODE: &str = "enphase_bridge";

/// Builds our topics from the configured base topic and discovery prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    base: String,
    prefix: String,
}

impl Topics {
    /// Topics under `base_topic` (e.g. `enphase`) and `discovery_prefix` (e.g. `homeassistant`);
    /// trailing slashes are dropped.
    pub fn new(base_topic: &str, discovery_prefix: &str) -> Self {
        Topics {
            base: base_topic.trim_end_matches('/').to_owned(),
            prefix: discovery_prefix.trim_end_matches('/').to_owned(),
        }
    }

    /// The base topic.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The discovery prefix.
    pub fn discovery_prefix(&self) -> &str {
        &self.prefix
    }

    /// `<base>/bridge/availability`: `online`/`offline`, retained, also the last will.
    pub fn bridge_availability(&self) -> String {
        format!("{}/bridge/availability", self.base)
    }

    /// `<base>/bridge/info`: the bridge's JSON, retained.
    pub fn bridge_info(&self) -> String {
        format!("{}/bridge/info", self.base)
    }

    /// `<prefix>/status`: Home Assistant's birth and last-will topic.
    pub fn hass_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// `<base>/bridge/request/refresh`: a message here asks for a poll now.
    pub fn refresh_request(&self) -> String {
        format!("{}/bridge/request/refresh", self.base)
    }

    /// `<base>/bridge/response/refresh`: the answer to a refresh request.
    pub fn refresh_response(&self) -> String {
        format!("{}/bridge/response/refresh", self.base)
    }

    /// `<base>/<id>/state`: the system's JSON state.
    pub fn system_state(&self, id: u64) -> String {
        format!("{}/{id}/state", self.base)
    }

    /// `<base>/<id>/availability`: `online` while Enphase's data is fresh.
    pub fn system_availability(&self, id: u64) -> String {
        format!("{}/{id}/availability", self.base)
    }

    /// `<base>/<id>/inverters/<serial>/state`: one microinverter's JSON state (serial sanitized).
    pub fn inverter_state(&self, id: u64, serial: &str) -> String {
        format!("{}/{id}/inverters/{}/state", self.base, sanitize(serial))
    }

    /// `<base>/<id>/intervals`: interval data (a later issue).
    pub fn intervals(&self, id: u64) -> String {
        format!("{}/{id}/intervals", self.base)
    }

    /// MQTT filters that match every retained discovery config we may have published, to find our
    /// old ones at start-up: one config per entity, and one per device.
    pub fn discovery_filters(&self) -> Vec<String> {
        vec![format!("{}/+/+/+/config", self.prefix), format!("{}/device/+/config", self.prefix)]
    }

    /// Whether a retained config topic is one of ours: under our prefix, in one of the two shapes
    /// above, with a node id `enphase_…` made of allowed characters.
    pub fn is_our_discovery_topic(&self, topic: &str) -> bool {
        let Some(rest) = topic.strip_prefix(&self.prefix).and_then(|r| r.strip_prefix('/')) else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let node = match parts.as_slice() {
            ["device", node, "config"] => node,
            [component, node, object, "config"] if *component != "device" => {
                if !is_clean(component) || !is_clean(object) {
                    return false;
                }
                node
            }
            _ => return false,
        };
        node.len() > NODE_PREFIX.len() && node.starts_with(NODE_PREFIX) && is_clean(node)
    }

    /// `<prefix>/<component>/<node_id>/<object_id>/config`.
    pub fn entity_config(&self, component: &str, node_id: &str, object_id: &str) -> String {
        format!("{}/{component}/{}/{}/config", self.prefix, sanitize(node_id), sanitize(object_id))
    }

    /// `<prefix>/device/<node_id>/config`.
    pub fn device_config(&self, node_id: &str) -> String {
        format!("{}/device/{}/config", self.prefix, sanitize(node_id))
    }

    /// A system's node id: `enphase_<id>`.
    pub fn site_node(id: u64) -> String {
        format!("{NODE_PREFIX}{id}")
    }

    /// A microinverter's node id: `enphase_<id>_<serial>` (sanitized).
    pub fn inverter_node(id: u64, serial: &str) -> String {
        format!("{NODE_PREFIX}{id}_{}", sanitize(serial))
    }

    /// The bridge's node id: `enphase_bridge`.
    pub fn bridge_node() -> &'static str {
        BRIDGE_NODE
    }

    /// `<node_id>_<key>`, e.g. `enphase_4210001_production_power`.
    pub fn unique_id(node_id: &str, key: &str) -> String {
        format!("{}_{}", sanitize(node_id), sanitize(key))
    }

    /// `<component>.<slug>`, e.g. `sensor.enphase_4210001_production_power`: what HA ≥ 2025.10
    /// uses as the entity id of a new entity (lowercase, digits and single underscores only).
    pub fn default_entity_id(component: &str, node_id: &str, key: &str) -> String {
        format!("{component}.{}", entity_slug(&format!("{node_id}_{key}")))
    }
}

/// Longest result of [`sanitize`]: a real serial is 12 digits, and a topic built from an absurd
/// one (it comes from the network) must stay far below MQTT's limit.
const MAX_SANITIZED: usize = 64;

/// Keeps `[A-Za-z0-9_-]` and turns every other character into `_`, so that serials and ids are
/// safe in topics and unique ids; an empty input gives `unknown`. A longer input than
/// `MAX_SANITIZED` keeps its start and ends in a hash of the whole, so it stays one of a kind.
pub fn sanitize(s: &str) -> String {
    if s.is_empty() {
        return "unknown".to_owned();
    }
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
    };
    if s.chars().count() <= MAX_SANITIZED {
        return clean(s);
    }
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let hash = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let head: String = s.chars().take(MAX_SANITIZED - 17).collect();
    format!("{}_{hash:016x}", clean(&head))
}

/// An entity-id object part: lowercase ASCII letters and digits separated by single underscores.
pub fn entity_slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() { "unknown".to_owned() } else { out }
}

fn is_clean(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics::new("enphase", "homeassistant")
    }

    #[test]
    fn state_and_bridge_topics() {
        let t = topics();
        assert_eq!(t.bridge_availability(), "enphase/bridge/availability");
        assert_eq!(t.bridge_info(), "enphase/bridge/info");
        assert_eq!(t.hass_status(), "homeassistant/status");
        assert_eq!(t.refresh_request(), "enphase/bridge/request/refresh");
        assert_eq!(t.refresh_response(), "enphase/bridge/response/refresh");
        assert_eq!(t.system_state(4210001), "enphase/4210001/state");
        assert_eq!(t.system_availability(4210001), "enphase/4210001/availability");
        assert_eq!(t.inverter_state(4210001, "121935144671"), "enphase/4210001/inverters/121935144671/state");
        assert_eq!(t.intervals(4210001), "enphase/4210001/intervals");
        let nested = Topics::new("home/solar/", "ha/discovery/");
        assert_eq!(nested.system_state(1), "home/solar/1/state");
        assert_eq!(nested.hass_status(), "ha/discovery/status");
    }

    #[test]
    fn discovery_topics_and_ids() {
        let t = topics();
        assert_eq!(
            t.entity_config("sensor", &Topics::site_node(4210001), "production_power"),
            "homeassistant/sensor/enphase_4210001/production_power/config"
        );
        assert_eq!(t.device_config(&Topics::site_node(4210001)), "homeassistant/device/enphase_4210001/config");
        assert_eq!(Topics::inverter_node(4210001, "1219 35/1446+71#"), "enphase_4210001_1219_35_1446_71_");
        assert_eq!(Topics::unique_id("enphase_4210001", "production_power"), "enphase_4210001_production_power");
        assert_eq!(
            Topics::default_entity_id("sensor", "enphase_4210001", "production_power"),
            "sensor.enphase_4210001_production_power"
        );
        assert_eq!(
            Topics::default_entity_id("sensor", &Topics::inverter_node(4210002, "2024EIM-1"), "power"),
            "sensor.enphase_4210002_2024eim_1_power"
        );
        assert_eq!(Topics::bridge_node(), "enphase_bridge");
    }

    #[test]
    fn sanitizing() {
        assert_eq!(sanitize("482241031052"), "482241031052");
        assert_eq!(sanitize("ab-CD_9"), "ab-CD_9");
        assert_eq!(sanitize("a/b+c#d e.f"), "a_b_c_d_e_f");
        assert_eq!(sanitize("é"), "_");
        assert_eq!(sanitize(""), "unknown");
        let (long_a, long_b) = ("7".repeat(70_000), format!("{}8", "7".repeat(69_999)));
        let (a, b) = (sanitize(&long_a), sanitize(&long_b));
        assert_eq!((a.len(), b.len()), (64, 64), "{a}");
        assert!(a.starts_with("7777") && a != b, "{a} {b}");
        assert_eq!(sanitize(&"x".repeat(64)), "x".repeat(64));
        let t = topics();
        assert_eq!(t.inverter_state(1, "x/y/#"), "enphase/1/inverters/x_y__/state", "no extra levels, no wildcards");
        assert_eq!(entity_slug("__Enphase--1__2__"), "enphase_1_2");
        assert_eq!(entity_slug("***"), "unknown");
    }

    #[test]
    fn our_discovery_topics() {
        let t = topics();
        for ours in [
            "homeassistant/sensor/enphase_4210001/production_power/config",
            "homeassistant/binary_sensor/enphase_bridge/authorization/config",
            "homeassistant/sensor/enphase_4210001_121935144671/power/config",
            "homeassistant/device/enphase_4210001/config",
            "homeassistant/device/enphase_bridge/config",
        ] {
            assert!(t.is_our_discovery_topic(ours), "{ours}");
        }
        for theirs in [
            "homeassistant/sensor/zigbee2mqtt_0x1234/power/config",
            "homeassistant/sensor/enphase_/power/config",
            "homeassistant/sensor/enphase_1/power/state",
            "homeassistant/sensor/enphase_1/config",
            "homeassistant/sensor/x/enphase_1/power/config",
            "homeassistant/device/enphase_1/x/config",
            "homeassistant/device/zigbee_1/config",
            "other/sensor/enphase_1/power/config",
            "homeassistantx/sensor/enphase_1/power/config",
            "homeassistant/status",
            "enphase/4210001/state",
        ] {
            assert!(!t.is_our_discovery_topic(theirs), "{theirs}");
        }
        let nested = Topics::new("e", "ha/disc");
        assert!(nested.is_our_discovery_topic("ha/disc/sensor/enphase_1/p/config"));
        assert!(!nested.is_our_discovery_topic("ha/sensor/enphase_1/p/config"));
    }

    #[test]
    fn filters_match_our_topics() {
        let t = topics();
        assert_eq!(t.discovery_filters(), ["homeassistant/+/+/+/config", "homeassistant/device/+/config"]);
        let matches = |filter: &str, topic: &str| {
            let f: Vec<&str> = filter.split('/').collect();
            let p: Vec<&str> = topic.split('/').collect();
            f.len() == p.len() && f.iter().zip(&p).all(|(f, p)| *f == "+" || f == p)
        };
        let entity = t.entity_config("sensor", "enphase_1", "production_power");
        let device = t.device_config("enphase_1");
        assert!(t.discovery_filters().iter().any(|f| matches(f, &entity)));
        assert!(t.discovery_filters().iter().any(|f| matches(f, &device)));
    }
}
