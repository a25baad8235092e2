//! Turns a [`SiteSnapshot`] and a [`BridgeStatus`] into retained state [`Message`]s. No I/O here.
//!
//! State JSON is snake_case with the unit in the key where it could be doubted (`power_w`,
//! `energy_today_wh`, `battery_soc_pct`), numbers as numbers, times as ISO 8601 with an offset
//! (UTC, `2025-06-16T19:16:12+00:00`), and absent data as an absent key — never 0 for unknown.
//! Keys come out in the fixed order of the structs below.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat};
use serde::Serialize;
use serde_json::Value;

use super::{Message, Topics};
use crate::enlighten::Plan;
use crate::model::{BridgeStatus, InverterReading, SiteSnapshot};

/// The payloads of the availability topics.
pub const ONLINE: &str = "online";
/// See [`ONLINE`].
pub const OFFLINE: &str = "offline";

/// The retained states of a system: `<base>/<id>/state`, one `<base>/<id>/inverters/<serial>/state`
/// per microinverter, and `<base>/<id>/availability` (`online`/`offline` from `available`).
pub fn site_states(snapshot: &SiteSnapshot, topics: &Topics) -> Vec<Message> {
    let id = snapshot.system_id;
    let mut out = Vec::with_capacity(snapshot.inverters.len() + 2);
    out.push(Message::retained(topics.system_state(id), to_text(&site_state(snapshot))));
    for inverter in &snapshot.inverters {
        out.push(Message::retained(topics.inverter_state(id, &inverter.serial), to_text(&inverter_state(inverter))));
    }
    let availability = if snapshot.available { ONLINE } else { OFFLINE };
    out.push(Message::retained(topics.system_availability(id), availability));
    out
}

/// The retained bridge JSON on `<base>/bridge/info`; the bridge device's entities read it.
pub fn bridge_info(status: &BridgeStatus, topics: &Topics) -> Message {
    Message::retained(topics.bridge_info(), to_text(&bridge_state(status)))
}

/// A system's state JSON (the payload of `<base>/<id>/state`).
pub fn site_state_json(s: &SiteSnapshot) -> Value {
    to_json(&site_state(s))
}

fn site_state(s: &SiteSnapshot) -> SiteState<'_> {
    SiteState {
        system_id: s.system_id,
        name: s.name.as_deref(),
        status: s.status.as_deref(),
        problem: s.problem(),
        last_report_at: s.last_report_at.and_then(iso8601),
        production_power_w: s.production.power_w,
        production_energy_today_wh: s.production.energy_today_wh,
        production_energy_lifetime_wh: s.production.energy_lifetime_wh,
        production_meter_energy_wh: s.production.meter_energy_wh,
        consumption_power_w: s.consumption.power_w,
        consumption_energy_lifetime_wh: s.consumption.energy_lifetime_wh,
        grid_power_w: s.grid.power_w,
        grid_import_energy_wh: s.grid.import_energy_wh,
        grid_export_energy_wh: s.grid.export_energy_wh,
        battery_soc_pct: s.battery.soc_percent,
        battery_power_w: s.battery.power_w,
        battery_charged_energy_wh: s.battery.charged_energy_wh,
        battery_discharged_energy_wh: s.battery.discharged_energy_wh,
        size_w: s.size_w,
        micro_count: s.micro_count,
        gateway_firmware: s.gateway.as_ref().and_then(|g| g.firmware.as_deref()),
    }
}

/// A microinverter's state JSON (the payload of `<base>/<id>/inverters/<serial>/state`).
pub fn inverter_state_json(i: &InverterReading) -> Value {
    to_json(&inverter_state(i))
}

fn inverter_state(i: &InverterReading) -> InverterState<'_> {
    InverterState {
        serial: &i.serial,
        model: i.model.as_deref(),
        status: i.status.as_deref(),
        last_report_at: i.last_report_at.and_then(iso8601),
        power_w: i.power_w,
        energy_lifetime_wh: i.energy_lifetime_wh,
    }
}

/// The bridge's JSON (the payload of `<base>/bridge/info`).
pub fn bridge_info_json(b: &BridgeStatus) -> Value {
    to_json(&bridge_state(b))
}

fn bridge_state(b: &BridgeStatus) -> BridgeInfo<'_> {
    BridgeInfo {
        version: &b.version,
        plan: b.plan,
        authorization_ok: b.authorization_ok,
        authorization_error: b.authorization_error.as_deref(),
        hits_month_used: b.hits_month_used,
        hits_month_limit: b.hits_month_limit,
        hits_month_left: b.hits_month_left(),
        hits_minute_used: b.hits_minute_used,
        hits_minute_limit: b.hits_minute_limit,
        next_poll_at: b.earliest_next_poll().and_then(iso8601),
        next_poll: b.next_poll.iter().filter_map(|(id, at)| Some((id.to_string(), iso8601(*at)?))).collect(),
        last_error: b.last_error.as_deref(),
        denied_endpoints: &b.denied_endpoints,
    }
}

/// Epoch seconds as ISO 8601 in UTC with an explicit offset, as HA's `timestamp` class wants.
pub fn iso8601(epoch_secs: i64) -> Option<String> {
    DateTime::from_timestamp(epoch_secs, 0).map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, false))
}

// Plain structs of numbers, strings and string-keyed maps always serialize.
const SERIALIZES: &str = "state structs serialize to JSON";

/// As a `Value` (whose maps sort their keys), for callers that inspect the state.
fn to_json(value: &impl Serialize) -> Value {
    serde_json::to_value(value).expect(SERIALIZES)
}

/// As text in the structs' field order, for publishing.
fn to_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect(SERIALIZES)
}

#[derive(Serialize)]
struct SiteState<'a> {
    system_id: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_report_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    production_power_w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    production_energy_today_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    production_energy_lifetime_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    production_meter_energy_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumption_power_w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    consumption_energy_lifetime_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grid_power_w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grid_import_energy_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    grid_export_energy_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery_soc_pct: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery_power_w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery_charged_energy_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    battery_discharged_energy_wh: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    micro_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway_firmware: Option<&'a str>,
}

#[derive(Serialize)]
struct InverterState<'a> {
    serial: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_report_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    power_w: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    energy_lifetime_wh: Option<i64>,
}

#[derive(Serialize)]
struct BridgeInfo<'a> {
    version: &'a str,
    plan: Plan,
    authorization_ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorization_error: Option<&'a str>,
    hits_month_used: u32,
    hits_month_limit: u32,
    hits_month_left: u32,
    hits_minute_used: u32,
    hits_minute_limit: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_poll_at: Option<String>,
    next_poll: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_error: Option<&'a str>,
    denied_endpoints: &'a [String],
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home_assistant::entities::{BRIDGE_ENTITIES, SITE_ENTITIES};
    use crate::model::SiteSnapshot;
    use crate::model::fixtures::{system_a, system_b};
    use serde_json::json;

    fn topics() -> Topics {
        Topics::new("enphase", "homeassistant")
    }

    #[test]
    fn system_b_state_json() {
        let state = site_state_json(&system_b());
        assert_eq!(
            state,
            json!({
                "system_id": 4210002,
                "name": "Harbour View Home",
                "status": "normal",
                "problem": false,
                "last_report_at": "2025-06-16T22:01:07+00:00",
                "production_power_w": 640,
                "production_energy_today_wh": 316,
                "production_energy_lifetime_wh": 8413221,
                "production_meter_energy_wh": 8412905,
                "consumption_power_w": 1680,
                "consumption_energy_lifetime_wh": 9871342,
                "grid_power_w": 880,
                "grid_import_energy_wh": 62580,
                "grid_export_energy_wh": 19865,
                "battery_soc_pct": 27,
                "battery_power_w": 160,
                "battery_charged_energy_wh": 1374360,
                "battery_discharged_energy_wh": 1226890,
                "size_w": 4680,
                "micro_count": 12,
                "gateway_firmware": "D8.2.4345 (b3c6a2)"
            })
        );
        for spec in SITE_ENTITIES {
            assert!(state.get(spec.state_key).is_some(), "every table key is in a full state: {}", spec.state_key);
        }
    }

    #[test]
    fn absent_data_is_an_absent_key() {
        let state = site_state_json(&system_a());
        let keys: Vec<&str> = state.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "last_report_at",
                "micro_count",
                "name",
                "problem",
                "production_energy_lifetime_wh",
                "production_energy_today_wh",
                "production_power_w",
                "size_w",
                "status",
                "system_id"
            ],
            "no consumption, grid, battery or gateway keys, and no zeros for them"
        );
        let empty = site_state_json(&SiteSnapshot::new(5));
        assert_eq!(empty, json!({"system_id": 5}));
    }

    #[test]
    fn key_order_is_stable() {
        let text = site_states(&system_b(), &topics())[0].payload.clone();
        assert!(text.starts_with(r#"{"system_id":4210002,"name":"Harbour View Home","status":"normal""#), "{text}");
        assert_eq!(text, site_states(&system_b(), &topics())[0].payload);
    }

    #[test]
    fn site_messages_are_retained_with_inverters_and_availability() {
        let mut a = system_a();
        let messages = site_states(&a, &topics());
        let topics_of: Vec<&str> = messages.iter().map(|m| m.topic.as_str()).collect();
        assert_eq!(
            topics_of,
            [
                "enphase/4210001/state",
                "enphase/4210001/inverters/121935144671/state",
                "enphase/4210001/inverters/121935144672/state",
                "enphase/4210001/inverters/121935144673/state",
                "enphase/4210001/availability",
            ]
        );
        assert!(messages.iter().all(|m| m.retain));
        let inverter: Value = serde_json::from_str(&messages[1].payload).unwrap();
        assert_eq!(
            inverter,
            json!({
                "serial": "121935144671",
                "model": "IQ7+",
                "status": "normal",
                "last_report_at": "2025-06-16T19:15:00+00:00",
                "power_w": 118,
                "energy_lifetime_wh": 1687342
            })
        );
        assert_eq!(messages[4].payload, "online");
        a.available = false;
        assert_eq!(site_states(&a, &topics()).last().unwrap().payload, "offline");
    }

    #[test]
    fn bridge_info_json_fields() {
        let mut status = BridgeStatus::new(Plan::Watt);
        status.hits_month_used = 123;
        status.hits_minute_used = 2;
        status.next_poll.insert(4210002, 1750112100);
        status.next_poll.insert(4210001, 1750111200);
        status.authorization_ok = false;
        status.authorization_error = Some("refresh token rejected".into());
        status.denied_endpoints = vec!["devices/micros/telemetry".into()];
        let message = bridge_info(&status, &topics());
        assert_eq!(message.topic, "enphase/bridge/info");
        assert!(message.retain);
        let info: Value = serde_json::from_str(&message.payload).unwrap();
        assert_eq!(
            info,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "plan": "watt",
                "authorization_ok": false,
                "authorization_error": "refresh token rejected",
                "hits_month_used": 123,
                "hits_month_limit": 1000,
                "hits_month_left": 877,
                "hits_minute_used": 2,
                "hits_minute_limit": 10,
                "next_poll_at": "2025-06-16T22:00:00+00:00",
                "next_poll": {"4210001": "2025-06-16T22:00:00+00:00", "4210002": "2025-06-16T22:15:00+00:00"},
                "denied_endpoints": ["devices/micros/telemetry"]
            })
        );
        for spec in BRIDGE_ENTITIES.iter().filter(|s| !s.state_key.is_empty()) {
            assert!(info.get(spec.state_key).is_some(), "{}", spec.state_key);
        }
        let fresh = bridge_info_json(&BridgeStatus::new(Plan::Kilowatt));
        assert!(fresh.get("next_poll_at").is_none() && fresh.get("last_error").is_none());
        assert_eq!(fresh["hits_month_left"], 50_000);
    }

    #[test]
    fn iso8601_has_an_offset() {
        assert_eq!(iso8601(0).as_deref(), Some("1970-01-01T00:00:00+00:00"));
        assert_eq!(iso8601(1750101372).as_deref(), Some("2025-06-16T19:16:12+00:00"));
        assert_eq!(iso8601(i64::MAX), None);
    }
}
