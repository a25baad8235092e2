//! The entity table: which state-JSON key becomes which Home Assistant entity, with its component,
//! device class, state class, unit, precision, category and icon. Discovery is driven by these tables
//! (as OpenDTU's `deviceFieldAssignment[]`), so adding an entity is one line here plus its state key.
//!
//! Classes follow what HA's Energy dashboard accepts: power in W with `measurement`, energy as
//! `total_increasing` (sent in Wh, shown in kWh), state of charge in % with class `battery`.

use crate::model::SiteSnapshot;

/// The Home Assistant platform of an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// `sensor`.
    Sensor,
    /// `binary_sensor`.
    BinarySensor,
    /// `button`.
    Button,
}

impl Component {
    /// The platform name used in topics, `platform` and entity ids.
    pub const fn as_str(self) -> &'static str {
        match self {
            Component::Sensor => "sensor",
            Component::BinarySensor => "binary_sensor",
            Component::Button => "button",
        }
    }
}

/// How an entity's value is read from the state JSON; decides its `value_template`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// The value as is: a number, a text or an ISO 8601 time.
    Raw,
    /// Wh in the JSON, kWh in Home Assistant.
    WhAsKwh,
    /// A JSON boolean; `ON` when true.
    OnWhenTrue,
    /// A JSON boolean; `ON` when false (e.g. `authorization_ok` false is a problem).
    OnWhenFalse,
    /// No state: a button that publishes to a command topic.
    Press,
}

/// What a system needs for an entity to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Every system.
    Always,
    /// A consumption meter (consumption and grid entities).
    ConsumptionMeter,
    /// Batteries.
    Battery,
}

impl Needs {
    /// Whether `snapshot` has what the entity needs. Decided by hardware, not by whether this
    /// poll carried a value, so entities do not come and go between polls.
    pub fn met_by(self, snapshot: &SiteSnapshot) -> bool {
        match self {
            Needs::Always => true,
            Needs::ConsumptionMeter => snapshot.has_consumption_meter(),
            Needs::Battery => snapshot.has_battery(),
        }
    }
}

/// One row of an entity table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntitySpec {
    /// Object id, and the suffix of `unique_id` and `default_entity_id`.
    pub key: &'static str,
    /// Entity name; HA shows it after the device name.
    pub name: &'static str,
    /// Platform.
    pub component: Component,
    /// Key in the state JSON (unused for buttons).
    pub state_key: &'static str,
    /// How the value is read.
    pub value: ValueKind,
    /// `device_class`.
    pub device_class: Option<&'static str>,
    /// `state_class`.
    pub state_class: Option<&'static str>,
    /// `unit_of_measurement`.
    pub unit: Option<&'static str>,
    /// `suggested_display_precision`.
    pub precision: Option<u8>,
    /// `entity_category` (`diagnostic`).
    pub category: Option<&'static str>,
    /// `icon`, where HA has no device class to pick one.
    pub icon: Option<&'static str>,
    /// When the entity exists (system tables only).
    pub needs: Needs,
    /// `expire_after`, seconds: Home Assistant shows the entity unavailable once its value is
    /// this old without a new one.
    pub expire_after: Option<u32>,
}

const DIAGNOSTIC: Option<&str> = Some("diagnostic");

const fn power(key: &'static str, name: &'static str, state_key: &'static str, needs: Needs) -> EntitySpec {
    EntitySpec {
        key,
        name,
        component: Component::Sensor,
        state_key,
        value: ValueKind::Raw,
        device_class: Some("power"),
        state_class: Some("measurement"),
        unit: Some("W"),
        precision: Some(0),
        category: None,
        icon: None,
        needs,
        expire_after: None,
    }
}

const fn energy(key: &'static str, name: &'static str, state_key: &'static str, needs: Needs) -> EntitySpec {
    EntitySpec {
        key,
        name,
        component: Component::Sensor,
        state_key,
        value: ValueKind::WhAsKwh,
        device_class: Some("energy"),
        state_class: Some("total_increasing"),
        unit: Some("kWh"),
        precision: Some(2),
        category: None,
        icon: None,
        needs,
        expire_after: None,
    }
}

const fn plain(key: &'static str, name: &'static str, component: Component, state_key: &'static str) -> EntitySpec {
    EntitySpec {
        key,
        name,
        component,
        state_key,
        value: ValueKind::Raw,
        device_class: None,
        state_class: None,
        unit: None,
        precision: None,
        category: None,
        icon: None,
        needs: Needs::Always,
        expire_after: None,
    }
}

/// One entity per row for each system, where the system has what `needs` asks for.
pub const SITE_ENTITIES: &[EntitySpec] = &[
    power("production_power", "Production power", "production_power_w", Needs::Always),
    energy("production_energy_today", "Production energy today", "production_energy_today_wh", Needs::Always),
    energy("production_energy_lifetime", "Production energy lifetime", "production_energy_lifetime_wh", Needs::Always),
    power("consumption_power", "Consumption power", "consumption_power_w", Needs::ConsumptionMeter),
    energy(
        "consumption_energy_lifetime",
        "Consumption energy lifetime",
        "consumption_energy_lifetime_wh",
        Needs::ConsumptionMeter,
    ),
    power("grid_power", "Net grid power", "grid_power_w", Needs::ConsumptionMeter),
    energy("grid_import_energy", "Grid import energy", "grid_import_energy_wh", Needs::ConsumptionMeter),
    energy("grid_export_energy", "Grid export energy", "grid_export_energy_wh", Needs::ConsumptionMeter),
    EntitySpec {
        device_class: Some("battery"),
        state_class: Some("measurement"),
        unit: Some("%"),
        precision: Some(0),
        needs: Needs::Battery,
        ..plain("battery_soc", "Battery state of charge", Component::Sensor, "battery_soc_pct")
    },
    power("battery_power", "Battery power", "battery_power_w", Needs::Battery),
    energy("battery_charged_energy", "Battery energy charged", "battery_charged_energy_wh", Needs::Battery),
    energy("battery_discharged_energy", "Battery energy discharged", "battery_discharged_energy_wh", Needs::Battery),
    EntitySpec { icon: Some("mdi:information-outline"), ..plain("status", "Status", Component::Sensor, "status") },
    EntitySpec {
        device_class: Some("timestamp"),
        ..plain("last_report", "Last report", Component::Sensor, "last_report_at")
    },
    EntitySpec {
        value: ValueKind::OnWhenTrue,
        device_class: Some("problem"),
        ..plain("problem", "Problem", Component::BinarySensor, "problem")
    },
    EntitySpec {
        device_class: Some("power"),
        unit: Some("W"),
        precision: Some(0),
        category: DIAGNOSTIC,
        ..plain("array_size", "Array size", Component::Sensor, "size_w")
    },
    EntitySpec {
        category: DIAGNOSTIC,
        icon: Some("mdi:solar-panel"),
        ..plain("microinverter_count", "Microinverters", Component::Sensor, "micro_count")
    },
    EntitySpec {
        category: DIAGNOSTIC,
        icon: Some("mdi:chip"),
        ..plain("gateway_firmware", "Gateway firmware", Component::Sensor, "gateway_firmware")
    },
];

/// How long a microinverter's power is shown after it was read.
pub const INVERTER_POWER_SHOWN_SECS: u32 = 3600;

/// One entity per row for each microinverter (its own device, linked to the system's).
pub const INVERTER_ENTITIES: &[EntitySpec] = &[
    // Read after dusk, nightly or weekly: the value is the micro's last report, and shown for an
    // hour only, not as its power all the next day (or week).
    EntitySpec { expire_after: Some(INVERTER_POWER_SHOWN_SECS), ..power("power", "Power", "power_w", Needs::Always) },
    energy("energy_lifetime", "Energy lifetime", "energy_lifetime_wh", Needs::Always),
];

/// The bridge device's entities; they read `<base>/bridge/info`.
pub const BRIDGE_ENTITIES: &[EntitySpec] = &[
    EntitySpec {
        state_class: Some("measurement"),
        icon: Some("mdi:api"),
        ..plain("api_hits_used", "API hits used this month", Component::Sensor, "hits_month_used")
    },
    EntitySpec {
        state_class: Some("measurement"),
        icon: Some("mdi:api"),
        ..plain("api_hits_left", "API hits left this month", Component::Sensor, "hits_month_left")
    },
    EntitySpec {
        value: ValueKind::OnWhenFalse,
        device_class: Some("problem"),
        ..plain("authorization", "Authorization", Component::BinarySensor, "authorization_ok")
    },
    EntitySpec {
        device_class: Some("timestamp"),
        ..plain("next_poll", "Next poll", Component::Sensor, "next_poll_at")
    },
    EntitySpec {
        value: ValueKind::Press,
        icon: Some("mdi:refresh"),
        ..plain("refresh", "Refresh", Component::Button, "")
    },
];

/// What the Refresh button publishes.
pub const REFRESH_PAYLOAD: &str = "{}";

impl EntitySpec {
    /// The `value_template` reading this entity from the state JSON, or `None` for a button.
    ///
    /// A key missing from the JSON renders `None`, which HA turns into `unknown` instead of keeping
    /// a stale value or logging an undefined-variable warning (`is defined` does not trip HA's
    /// logging `Undefined`). Numeric and binary sensors have read `None` so for years; text and
    /// timestamp sensors since the fix for HA core issue #126694 (2024.10), before which a text
    /// sensor shows the word `None` — only for data Enphase never sent.
    pub fn value_template(&self) -> Option<String> {
        let k = self.state_key;
        let value = match self.value {
            ValueKind::Raw => format!("value_json.{k}"),
            ValueKind::WhAsKwh => format!("(value_json.{k} / 1000)"),
            ValueKind::OnWhenTrue => format!("('ON' if value_json.{k} else 'OFF')"),
            ValueKind::OnWhenFalse => format!("('OFF' if value_json.{k} else 'ON')"),
            ValueKind::Press => return None,
        };
        Some(format!("{{{{ {value} if value_json.{k} is defined else none }}}}"))
    }
}

/// The system entities `snapshot` gets.
pub fn site_entities(snapshot: &SiteSnapshot) -> impl Iterator<Item = &'static EntitySpec> + '_ {
    SITE_ENTITIES.iter().filter(|spec| spec.needs.met_by(snapshot))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::{system_a, system_b};
    use std::collections::BTreeSet;

    #[test]
    fn keys_are_unique_and_clean() {
        for table in [SITE_ENTITIES, INVERTER_ENTITIES, BRIDGE_ENTITIES] {
            let keys: BTreeSet<_> = table.iter().map(|s| s.key).collect();
            assert_eq!(keys.len(), table.len());
            for spec in table {
                assert!(
                    spec.key.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                    "{}",
                    spec.key
                );
                assert!(!spec.name.is_empty());
            }
        }
    }

    #[test]
    fn energy_dashboard_rules() {
        for spec in SITE_ENTITIES.iter().chain(INVERTER_ENTITIES) {
            match spec.device_class {
                Some("energy") => {
                    assert_eq!(spec.state_class, Some("total_increasing"), "{}", spec.key);
                    assert_eq!((spec.unit, spec.value), (Some("kWh"), ValueKind::WhAsKwh), "{}", spec.key);
                    assert!(spec.state_key.ends_with("_wh"), "{}", spec.key);
                }
                Some("power") => {
                    assert_eq!(spec.unit, Some("W"), "{}", spec.key);
                    assert!(spec.state_key.ends_with("_w"), "{}", spec.key);
                    // The array size is a rating, not a measurement to keep statistics of.
                    let expected = if spec.key == "array_size" { None } else { Some("measurement") };
                    assert_eq!(spec.state_class, expected, "{}", spec.key);
                }
                _ => {}
            }
        }
    }

    #[test]
    fn templates_have_one_shape_per_kind() {
        let by_key = |key: &str| SITE_ENTITIES.iter().chain(BRIDGE_ENTITIES).find(|s| s.key == key).unwrap();
        assert_eq!(
            by_key("production_power").value_template().unwrap(),
            "{{ value_json.production_power_w if value_json.production_power_w is defined else none }}"
        );
        assert_eq!(
            by_key("grid_import_energy").value_template().unwrap(),
            "{{ (value_json.grid_import_energy_wh / 1000) if value_json.grid_import_energy_wh is defined else none }}"
        );
        assert_eq!(
            by_key("problem").value_template().unwrap(),
            "{{ ('ON' if value_json.problem else 'OFF') if value_json.problem is defined else none }}"
        );
        assert_eq!(
            by_key("authorization").value_template().unwrap(),
            "{{ ('OFF' if value_json.authorization_ok else 'ON') if value_json.authorization_ok is defined else none }}"
        );
        assert_eq!(by_key("refresh").value_template(), None);
    }

    #[test]
    fn entities_follow_the_hardware() {
        fn keys(s: &SiteSnapshot) -> Vec<&'static str> {
            site_entities(s).map(|e| e.key).collect()
        }
        let a = keys(&system_a());
        assert_eq!(
            a,
            [
                "production_power",
                "production_energy_today",
                "production_energy_lifetime",
                "status",
                "last_report",
                "problem",
                "array_size",
                "microinverter_count",
                "gateway_firmware"
            ]
        );
        assert_eq!(keys(&system_b()).len(), SITE_ENTITIES.len(), "B has meters and a battery: every entity");
    }
}
