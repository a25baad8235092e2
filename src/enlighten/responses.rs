//! Serde structs that mirror the JSON of Enlighten's Monitoring API v4, nothing more.
//!
//! Every field is optional or defaulted and read through a [`lenient`] helper, and unknown fields
//! are ignored: Enphase adds fields without versioning and its spec contradicts its examples
//! (`docs: enlighten-api.md` §9), so one odd field must never cost us the whole response. No Home
//! Assistant or MQTT knowledge lives here; `model.rs` turns these into our own types.

use chrono::{Days, NaiveDate};
use serde::de;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::lenient;

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// The `meta` object on most lifetime, telemetry and meter-reading answers (§4.1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Meta {
    /// System status (`normal`, `comm`, `micro`, …; an open set, §4.17).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Epoch seconds of the gateway's last upload.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_report_at: Option<i64>,
    /// Epoch seconds of the last production report (even a 0 Wh one).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_energy_at: Option<i64>,
    /// Epoch seconds at which the system became operational.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub operational_at: Option<i64>,
}

/// The fields every interval-telemetry answer shares (§4.6); flattened into each telemetry type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TelemetryEnvelope {
    /// The system the data belongs to.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// `5mins`, `15mins`, `day` or `week`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub granularity: Option<String>,
    /// Devices behind the series (always 0 for import/export).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub total_devices: Option<i64>,
    /// Start of the window, epoch seconds (when the request used `start_at`).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub start_at: Option<i64>,
    /// Start of the window, local `YYYY-MM-DD` (when the request used `start_date`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// End of the window, epoch seconds.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub end_at: Option<i64>,
    /// End of the window, local `YYYY-MM-DD` (when the request used `end_date`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub end_date: Option<String>,
    /// The name of the list key, `"intervals"`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub items: Option<String>,
    /// System status and report times, where the endpoint sends them.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

/// One day's energy of a lifetime series, paired with its local date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWh {
    /// The day, in the system's time zone.
    pub date: NaiveDate,
    /// Wh for that day. Trailing zeros mean "not reported yet", not "no energy" (§4.13).
    pub wh: i64,
}

/// Pairs each entry of a lifetime series with its date, counting days from `start_date`
/// (`YYYY-MM-DD`). Unreadable entries are skipped without shifting the following days; an absent
/// or unreadable `start_date` gives an empty list.
pub fn daily_series(start_date: Option<&str>, values: &[Option<i64>]) -> Vec<DailyWh> {
    let Some(start) = start_date.and_then(parse_local_date) else {
        return Vec::new();
    };
    values
        .iter()
        .enumerate()
        .filter_map(|(i, wh)| {
            let date = start.checked_add_days(Days::new(u64::try_from(i).ok()?))?;
            Some(DailyWh { date, wh: (*wh)? })
        })
        .collect()
}

fn parse_local_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    // Tolerate a date-time ("2025-06-10T00:00:00…") by reading its date part.
    NaiveDate::parse_from_str(s.get(..10).unwrap_or(s), "%Y-%m-%d").ok()
}

// ---------------------------------------------------------------------------------------------
// Systems
// ---------------------------------------------------------------------------------------------

/// `GET /systems`: one page of the systems the token can see (§4.2).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemsPage {
    /// All systems visible to the token, over all pages.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub total: Option<i64>,
    /// This page's number, from 1.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub current_page: Option<i64>,
    /// The page size used.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub size: Option<i64>,
    /// Systems on this page.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub count: Option<i64>,
    /// The name of the list key, `"systems"`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub items: Option<String>,
    /// The systems (an unreadable entry is skipped).
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub systems: Vec<System>,
}

impl SystemsPage {
    /// Whether another page follows: `current_page * size < total`. False when any of the three is
    /// missing or when this page came back empty, so a paging loop always ends.
    pub fn has_more(&self) -> bool {
        match (self.current_page, self.size, self.total) {
            (Some(page), Some(size), Some(total)) if page > 0 && size > 0 => {
                !self.systems.is_empty() && page.saturating_mul(size) < total
            }
            _ => false,
        }
    }
}

/// A system's postal address; any part may be missing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Address {
    /// City.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub city: Option<String>,
    /// State or region.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub state: Option<String>,
    /// Country code.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub country: Option<String>,
    /// Postal code (kept as text: leading zeros matter).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub postal_code: Option<String>,
}

/// `GET /systems/{id}`, and each entry of the systems list (§4.2, §4.3).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct System {
    /// Numeric system id.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// The owner's name for the system.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Public name (`Residential System`, …).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub public_name: Option<String>,
    /// IANA time zone of the site; `*_date` fields are in it. May be null in search results.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub timezone: Option<String>,
    /// Postal address.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub address: Option<Address>,
    /// `ethernet`, `wifi`, `cellular`, …
    #[serde(deserialize_with = "lenient::opt_string")]
    pub connection_type: Option<String>,
    /// System status (§4.17).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Epoch seconds of the gateway's last upload.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_report_at: Option<i64>,
    /// Epoch seconds of the last production report.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_energy_at: Option<i64>,
    /// Epoch seconds at which the system became operational.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub operational_at: Option<i64>,
    /// `rack_mount`, `zep`, `acm`, … or none.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub attachment_type: Option<String>,
    /// `YYYY-MM-DD` (the schema says integer; examples and reality say string or null).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub interconnect_date: Option<String>,
    /// A reference set by the installer's company, if any.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub reference: Option<String>,
    /// Other companies' references, if any.
    #[serde(deserialize_with = "lenient::string_list")]
    pub other_references: Vec<String>,
    /// `enabled`/`disabled`, only from a search with `live_stream=true`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub live_stream: Option<String>,
    /// Deprecated: Enphase sends -1 since 2023-07, read as `None`.
    #[serde(deserialize_with = "lenient::opt_non_negative_i64")]
    pub energy_lifetime: Option<i64>,
    /// Deprecated: Enphase sends -1 since 2023-07, read as `None`.
    #[serde(deserialize_with = "lenient::opt_non_negative_i64")]
    pub energy_today: Option<i64>,
    /// Deprecated: Enphase sends -1 since 2023-07, read as `None`.
    #[serde(deserialize_with = "lenient::opt_non_negative_i64")]
    pub system_size: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/summary` (§4.4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Summary {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// W now (0 for past dates).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub current_power: Option<i64>,
    /// Wh produced on `summary_date`.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub energy_today: Option<i64>,
    /// Wh produced up to the end of the day before `summary_date` (add `energy_today` for "now").
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub energy_lifetime: Option<i64>,
    /// Epoch seconds of the end of the last interval with production.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_interval_end_at: Option<i64>,
    /// Epoch seconds of the gateway's last upload.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_report_at: Option<i64>,
    /// Number of modules (0 for past dates).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub modules: Option<i64>,
    /// System size in W (0 for past dates).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub size_w: Option<i64>,
    /// Epoch seconds at which the system became operational.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub operational_at: Option<i64>,
    /// Australian National Meter Identifier (schema says integer, example is a string).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub nmi: Option<String>,
    /// `microinverters` or `meter`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub source: Option<String>,
    /// System status (§4.17).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// The local date summarised, `YYYY-MM-DD`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub summary_date: Option<String>,
    /// Maximum charge rate of all batteries, W.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub battery_charge_w: Option<i64>,
    /// Maximum discharge rate of all batteries, W.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub battery_discharge_w: Option<i64>,
    /// Battery capacity, Wh.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub battery_capacity_wh: Option<i64>,
    /// Per-charger limits, flattened from the list of single-key maps Enphase sends.
    #[serde(deserialize_with = "evse_power_list")]
    pub evse_power: Vec<EvsePower>,
}

/// One EV charger's limits from `summary.evse_power`: `{"<serial>": {"evse_max_charge_w": …}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvsePower {
    /// The charger's serial number (the map key).
    pub serial_number: String,
    /// Maximum charge power, W.
    pub evse_max_charge_w: Option<i64>,
    /// Minimum charge power, W.
    pub evse_min_charge_w: Option<i64>,
}

impl EvsePower {
    fn from_limits(serial_number: String, limits: &serde_json::Map<String, Value>) -> Self {
        let get = |key: &str| limits.get(key).and_then(lenient::i64_from_value);
        Self { serial_number, evse_max_charge_w: get("evse_max_charge_w"), evse_min_charge_w: get("evse_min_charge_w") }
    }
}

fn evse_power_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EvsePower>, D::Error> {
    let items = match Value::deserialize(d)? {
        Value::Array(items) => items,
        obj @ Value::Object(_) => vec![obj],
        _ => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(map) = item else { continue };
        if map.contains_key("evse_max_charge_w") || map.contains_key("evse_min_charge_w") {
            // Already flat: {"serial_number": …, "evse_max_charge_w": …}.
            let serial = ["serial_number", "serial_num", "serial"]
                .iter()
                .find_map(|k| map.get(*k).and_then(lenient::string_from_value))
                .unwrap_or_default();
            out.push(EvsePower::from_limits(serial, &map));
            continue;
        }
        for (serial, limits) in &map {
            if let Value::Object(limits) = limits {
                out.push(EvsePower::from_limits(serial.clone(), limits));
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Devices
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/devices` (§4.5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Devices {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// Active devices of all types.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub total_devices: Option<i64>,
    /// The name of the list key, `"devices"`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub items: Option<String>,
    /// The devices by type.
    #[serde(deserialize_with = "lenient::struct_or_default")]
    pub devices: DeviceGroups,
}

/// The `devices` object: a key appears only when that type of device exists; absent means empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct DeviceGroups {
    /// Microinverters.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub micros: Vec<Device>,
    /// Meters (with `state`, `config_type`, `config_phase`).
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub meters: Vec<Device>,
    /// IQ Gateways (with `emu_sw_version`, `cellular_modem`).
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub gateways: Vec<Device>,
    /// Q Relays.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub q_relays: Vec<Device>,
    /// AC Batteries.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub acbs: Vec<Device>,
    /// IQ Batteries.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub encharges: Vec<Device>,
    /// IQ System Controllers.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub enpowers: Vec<Device>,
    /// EV chargers.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub ev_chargers: Vec<Device>,
    /// Heat pumps.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub heat_pump: Vec<Device>,
    /// IQ Meter Collars.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub iq_collars: Vec<Device>,
    /// IQ Air devices.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub iq_air: Vec<Device>,
    /// Generators.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub generators: Vec<Device>,
}

/// One device of any type; fields a type does not have stay `None`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Device {
    /// Numeric id; `None` where Enphase sends `""` (EV chargers, heat pumps, IQ Air).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    /// Epoch seconds of the last report.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_report_at: Option<i64>,
    /// Display name (for meters: `production` or `consumption`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Serial number.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub serial_number: Option<String>,
    /// Enphase part number.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub part_number: Option<String>,
    /// SKU.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sku: Option<String>,
    /// Model (may be `""`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub model: Option<String>,
    /// Device status.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Whether the device is active.
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub active: Option<bool>,
    /// Product name.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub product_name: Option<String>,
    /// FEOC compliance (micros, batteries).
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub feoc_compliant: Option<bool>,
    /// Domestic-content compliance (micros, batteries).
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub dom_compliant: Option<bool>,
    /// Meter state (`enabled`, …).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub state: Option<String>,
    /// Meter role: `Production`, `Net` or `Total`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub config_type: Option<String>,
    /// Meter phases: `single`, `split` or `three`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub config_phase: Option<String>,
    /// Gateway software version.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub emu_sw_version: Option<String>,
    /// Gateway cellular modem, if fitted (boxed: other devices carry none, and a device list can
    /// hold dozens of devices).
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub cellular_modem: Option<Box<CellularModem>>,
}

/// A gateway's cellular modem.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CellularModem {
    /// Modem IMEI.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub imei: Option<String>,
    /// Part number.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub part_num: Option<String>,
    /// SKU.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sku: Option<String>,
    /// Start of the data plan.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub plan_start_date: Option<String>,
    /// End of the data plan.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub plan_end_date: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Latest telemetry
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/latest_telemetry`: last reported power per meter channel and device (§4.11).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LatestTelemetry {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// The name of the list key, `"devices"`.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub items: Option<String>,
    /// Readings by device type.
    #[serde(deserialize_with = "lenient::struct_or_default")]
    pub devices: LatestDevices,
}

/// The `devices` object of `latest_telemetry`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(from = "RawLatestDevices")]
pub struct LatestDevices {
    /// One entry per meter and channel (unused phases come with null values).
    pub meters: Vec<LatestReading>,
    /// IQ Batteries, with `operational_mode` (`Idle`, `Charging`, `Discharging`).
    pub encharges: Vec<LatestReading>,
    /// Heat pumps, from the `heat-pump` key (hyphen!), or `heat_pump` should Enphase fix it.
    pub heat_pump: Vec<LatestReading>,
    /// Third-party EV chargers.
    pub evse: Vec<LatestReading>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawLatestDevices {
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    meters: Vec<LatestReading>,
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    encharges: Vec<LatestReading>,
    #[serde(rename = "heat-pump", deserialize_with = "lenient::vec_skip_invalid")]
    heat_pump_hyphen: Vec<LatestReading>,
    #[serde(rename = "heat_pump", deserialize_with = "lenient::vec_skip_invalid")]
    heat_pump_underscore: Vec<LatestReading>,
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    evse: Vec<LatestReading>,
}

impl From<RawLatestDevices> for LatestDevices {
    fn from(raw: RawLatestDevices) -> Self {
        let heat_pump = if raw.heat_pump_hyphen.is_empty() { raw.heat_pump_underscore } else { raw.heat_pump_hyphen };
        Self { meters: raw.meters, encharges: raw.encharges, heat_pump, evse: raw.evse }
    }
}

/// One last-reported reading. A device silent for over 7 days has `last_report_at`, `power` and
/// `operational_mode` null.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct LatestReading {
    /// Device id.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    /// Meters: `production` or `consumption`; others: a display name.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub name: Option<String>,
    /// Phase channel, 1–3.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub channel: Option<i64>,
    /// Epoch seconds of the reading.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub last_report_at: Option<i64>,
    /// W.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub power: Option<i64>,
    /// Batteries, heat pumps and EV chargers: their mode.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub operational_mode: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Interval telemetry
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/telemetry/production_micro`: site sum of all micros, 5-minute buckets (§4.7).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductionMicro {
    /// Window, granularity and meta.
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The buckets (may be empty: nothing new since `start_at`).
    #[serde(default, deserialize_with = "lenient::vec_skip_invalid")]
    pub intervals: Vec<MicroInterval>,
}

/// One micro bucket: site-wide or, in device telemetry, one micro's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MicroInterval {
    /// Epoch seconds of the end of the bucket (identifies it).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub end_at: Option<i64>,
    /// Micros that reported in the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub devices_reporting: Option<i64>,
    /// Average W over the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub powr: Option<i64>,
    /// Wh in the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub enwh: Option<i64>,
}

/// `GET /systems/{id}/telemetry/production_meter`: 15-minute production meter buckets (§4.8).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProductionMeter {
    /// Window, granularity and meta.
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The buckets.
    #[serde(default, deserialize_with = "lenient::vec_skip_invalid")]
    pub intervals: Vec<ProductionMeterInterval>,
}

/// One production meter bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ProductionMeterInterval {
    /// Epoch seconds of the end of the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub end_at: Option<i64>,
    /// Meters that reported.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub devices_reporting: Option<i64>,
    /// Wh delivered in the bucket (no power field: W = `wh_del × 4`).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub wh_del: Option<i64>,
}

/// `GET /systems/{id}/telemetry/consumption_meter`: 15-minute consumption buckets (§4.9).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ConsumptionMeter {
    /// Window, granularity and meta.
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The buckets.
    #[serde(default, deserialize_with = "lenient::vec_skip_invalid")]
    pub intervals: Vec<ConsumptionMeterInterval>,
}

/// One consumption meter bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ConsumptionMeterInterval {
    /// Epoch seconds of the end of the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub end_at: Option<i64>,
    /// Meters that reported.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub devices_reporting: Option<i64>,
    /// Wh consumed in the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub enwh: Option<i64>,
}

/// `GET /systems/{id}/telemetry/battery`: 15-minute battery buckets (§4.10).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct BatteryTelemetry {
    /// Window, granularity and meta.
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The buckets.
    #[serde(default, deserialize_with = "lenient::vec_skip_invalid")]
    pub intervals: Vec<BatteryInterval>,
    /// Aggregate state of charge, %, read from `"27%"`.
    #[serde(default, deserialize_with = "lenient::opt_percent")]
    pub last_reported_aggregate_soc: Option<u8>,
}

/// One battery bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BatteryInterval {
    /// Epoch seconds of the end of the bucket.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub end_at: Option<i64>,
    /// Energy into the batteries.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub charge: Option<BatteryEnergy>,
    /// Energy out of the batteries.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub discharge: Option<BatteryEnergy>,
    /// State of charge at the end of the bucket.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub soc: Option<BatterySoc>,
}

/// Battery energy in one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BatteryEnergy {
    /// Wh.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub enwh: Option<i64>,
    /// Batteries that reported (absent in single-battery telemetry).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub devices_reporting: Option<i64>,
}

/// Battery state of charge in one bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct BatterySoc {
    /// %, 0–100.
    #[serde(deserialize_with = "lenient::opt_percent")]
    pub percent: Option<u8>,
    /// Batteries that reported (absent in single-battery telemetry).
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub devices_reporting: Option<i64>,
}

/// `GET /systems/{id}/energy_import_telemetry` and `energy_export_telemetry` (§4.12). The examples
/// nest `intervals` as `[[{…}]]` and name the import field `wh_exported`: both shapes and both
/// names are read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImportExportTelemetry {
    /// Window, granularity and meta (`total_devices` is always 0 here).
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The buckets, flattened.
    #[serde(default, deserialize_with = "lenient::nested_vec")]
    pub intervals: Vec<ImportExportInterval>,
}

/// One import or export bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawImportExportInterval")]
pub struct ImportExportInterval {
    /// Epoch seconds of the end of the bucket.
    pub end_at: Option<i64>,
    /// Wh imported (import endpoint) or exported (export endpoint) in the bucket, from
    /// `wh_imported` or else `wh_exported`, whichever the answer carries.
    pub wh: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawImportExportInterval {
    #[serde(deserialize_with = "lenient::opt_i64")]
    end_at: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    wh_imported: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    wh_exported: Option<i64>,
}

impl From<RawImportExportInterval> for ImportExportInterval {
    fn from(raw: RawImportExportInterval) -> Self {
        Self { end_at: raw.end_at, wh: raw.wh_imported.or(raw.wh_exported) }
    }
}

// ---------------------------------------------------------------------------------------------
// Device-level telemetry (Kilowatt plan and up)
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/devices/micros/telemetry`: per-micro buckets, paginated by device.
///
/// The per-device list is read from `devices` (the documented key), or `micros` or `telemetry`;
/// each entry is `{"serial_number", "intervals": […]}`, and a map `{"<serial>": [intervals]}` is
/// accepted too.
#[derive(Debug, Clone, Default)]
pub struct MicrosTelemetry {
    /// Window, granularity, meta; `total_devices` counts micros over all pages.
    pub envelope: TelemetryEnvelope,
    /// This page's number, from 1.
    pub page: Option<i64>,
    /// Devices per page (`size` or `page_size`).
    pub size: Option<i64>,
    /// One series per micro on this page.
    pub devices: Vec<MicroSeries>,
}

impl MicrosTelemetry {
    /// Whether another page of devices follows: `page * size < total_devices`, and this page was
    /// not empty.
    pub fn has_more(&self) -> bool {
        match (self.page, self.size, self.envelope.total_devices) {
            (Some(page), Some(size), Some(total)) if page > 0 && size > 0 => {
                !self.devices.is_empty() && page.saturating_mul(size) < total
            }
            _ => false,
        }
    }
}

/// One micro's buckets within [`MicrosTelemetry`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MicroSeries {
    /// The micro's serial number.
    pub serial_number: Option<String>,
    /// Its buckets (`powr`, `enwh`; `devices_reporting` absent).
    pub intervals: Vec<MicroInterval>,
}

/// A day of a large system's per-micro buckets is thousands of values: rather than one JSON tree
/// of the whole answer (or the buffering that `#[serde(flatten)]` does), the answer is kept as
/// text and read twice, the envelope alone and then the devices one at a time.
impl<'de> Deserialize<'de> for MicrosTelemetry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw: Box<serde_json::value::RawValue> = Deserialize::deserialize(d)?;
        let text = raw.get();
        let envelope: TelemetryEnvelope = serde_json::from_str(text).map_err(de::Error::custom)?;
        let parts: RawMicrosTelemetry = serde_json::from_str(text).map_err(de::Error::custom)?;
        let devices = [parts.devices, parts.micros, parts.telemetry]
            .into_iter()
            .map(|l| l.0)
            .find(|l| !l.is_empty())
            .unwrap_or_default();
        Ok(Self { envelope, page: parts.page, size: parts.size.or(parts.page_size), devices })
    }
}

#[derive(Default, Deserialize)]
struct RawMicrosTelemetry {
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    page: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    size: Option<i64>,
    #[serde(default, deserialize_with = "lenient::opt_i64")]
    page_size: Option<i64>,
    #[serde(default)]
    devices: SeriesList,
    #[serde(default)]
    micros: SeriesList,
    #[serde(default)]
    telemetry: SeriesList,
}

/// The per-micro series, read one device at a time: a list of `{"serial_number", "intervals"}`,
/// or a map of serial to intervals (or to `{"intervals"}`); anything else is no series.
#[derive(Default)]
struct SeriesList(Vec<MicroSeries>);

impl<'de> Deserialize<'de> for SeriesList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = SeriesList;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a list or map of per-micro series")
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<SeriesList, A::Error> {
                let mut list = Vec::new();
                while let Some(item) = seq.next_element::<Value>()? {
                    list.extend(micro_series_from_value(Value::Array(vec![item])));
                }
                Ok(SeriesList(list))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<SeriesList, A::Error> {
                let mut list = Vec::new();
                while let Some((serial, v)) = map.next_entry::<String, Value>()? {
                    let one = serde_json::Map::from_iter([(serial, v)]);
                    list.extend(micro_series_from_value(Value::Object(one)));
                }
                Ok(SeriesList(list))
            }

            fn visit_unit<E>(self) -> Result<SeriesList, E> {
                Ok(SeriesList::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<SeriesList, E> {
                Ok(SeriesList::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<SeriesList, E> {
                Ok(SeriesList::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<SeriesList, E> {
                Ok(SeriesList::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<SeriesList, E> {
                Ok(SeriesList::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<SeriesList, E> {
                Ok(SeriesList::default())
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn micro_series_from_value(value: Value) -> Vec<MicroSeries> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| {
                let Value::Object(map) = item else {
                    return None;
                };
                let serial_number = ["serial_number", "serial_num", "serial"]
                    .iter()
                    .find_map(|k| map.get(*k).and_then(lenient::string_from_value));
                let mut map = map;
                let intervals = map.remove("intervals").map(lenient::nested_vec_from_value).unwrap_or_default();
                Some(MicroSeries { serial_number, intervals })
            })
            .collect(),
        Value::Object(map) => map
            .into_iter()
            .filter_map(|(serial, v)| {
                let intervals = match v {
                    list @ Value::Array(_) => lenient::nested_vec_from_value(list),
                    Value::Object(mut inner) => lenient::nested_vec_from_value(inner.remove("intervals")?),
                    _ => return None,
                };
                Some(MicroSeries { serial_number: Some(serial), intervals })
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// `GET /systems/{id}/devices/micros/{serial}/telemetry`: one micro's buckets.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct MicroTelemetry {
    /// Window, granularity and meta (`total_devices` is 1).
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The micro's serial number.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub serial_number: Option<String>,
    /// Its buckets.
    #[serde(default, deserialize_with = "lenient::vec_skip_invalid")]
    pub intervals: Vec<MicroInterval>,
}

/// `GET /systems/{id}/devices/encharges/{serial}/telemetry`: one IQ Battery's buckets (§4.10).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EnchargeTelemetry {
    /// Window, granularity and meta (`total_devices` is 1).
    #[serde(flatten)]
    pub envelope: TelemetryEnvelope,
    /// The battery's serial number.
    #[serde(default, deserialize_with = "lenient::opt_string")]
    pub serial_number: Option<String>,
    /// Its buckets (no `devices_reporting`).
    #[serde(default, deserialize_with = "lenient::vec_skip_invalid")]
    pub intervals: Vec<BatteryInterval>,
    /// Epoch seconds of its last report.
    #[serde(default, deserialize_with = "lenient::opt_epoch")]
    pub last_reported_time: Option<i64>,
    /// Its last state of charge, %, read from `"99%"`.
    #[serde(default, deserialize_with = "lenient::opt_percent")]
    pub last_reported_soc: Option<u8>,
}

// ---------------------------------------------------------------------------------------------
// Lifetime (daily) series
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/energy_lifetime` (with `production=all`): daily production Wh (§4.13).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EnergyLifetime {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// Local date of the first entry (null if the system never produced).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// First full day of meter data, when the site has a production meter.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub meter_start_date: Option<String>,
    /// Wh per day: micro data, then meter data from `meter_start_date`.
    #[serde(deserialize_with = "lenient::series")]
    pub production: Vec<Option<i64>>,
    /// Wh per day from the micros (`production=all` only).
    #[serde(deserialize_with = "lenient::series")]
    pub micro_production: Vec<Option<i64>>,
    /// Wh per day from the meter (`production=all` only).
    #[serde(deserialize_with = "lenient::series")]
    pub meter_production: Vec<Option<i64>>,
    /// System status and report times.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

impl EnergyLifetime {
    /// `production` paired with local dates.
    pub fn production_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.production)
    }

    /// `micro_production` paired with local dates.
    pub fn micro_production_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.micro_production)
    }

    /// `meter_production` paired with local dates.
    pub fn meter_production_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.meter_production)
    }
}

/// `GET /systems/{id}/consumption_lifetime`: daily consumption Wh.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConsumptionLifetime {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// Local date of the first entry.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// Wh per day.
    #[serde(deserialize_with = "lenient::series")]
    pub consumption: Vec<Option<i64>>,
    /// System status and report times.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

impl ConsumptionLifetime {
    /// `consumption` paired with local dates.
    pub fn consumption_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.consumption)
    }
}

/// `GET /systems/{id}/battery_lifetime`: daily battery charge and discharge Wh.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BatteryLifetime {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// Local date of the first entry.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// Wh into the batteries per day.
    #[serde(deserialize_with = "lenient::series")]
    pub charge: Vec<Option<i64>>,
    /// Wh out of the batteries per day.
    #[serde(deserialize_with = "lenient::series")]
    pub discharge: Vec<Option<i64>>,
    /// System status and report times.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

impl BatteryLifetime {
    /// `charge` paired with local dates.
    pub fn charge_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.charge)
    }

    /// `discharge` paired with local dates.
    pub fn discharge_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.discharge)
    }
}

/// `GET /systems/{id}/energy_import_lifetime`: daily Wh imported from the grid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ImportLifetime {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// Local date of the first entry.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// Wh imported per day.
    #[serde(deserialize_with = "lenient::series")]
    pub import: Vec<Option<i64>>,
    /// System status and report times.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

impl ImportLifetime {
    /// `import` paired with local dates.
    pub fn import_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.import)
    }
}

/// `GET /systems/{id}/energy_export_lifetime`: daily Wh exported to the grid.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ExportLifetime {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// Local date of the first entry.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// Wh exported per day.
    #[serde(deserialize_with = "lenient::series")]
    pub export: Vec<Option<i64>>,
    /// System status and report times.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

impl ExportLifetime {
    /// `export` paired with local dates.
    pub fn export_by_day(&self) -> Vec<DailyWh> {
        daily_series(self.start_date.as_deref(), &self.export)
    }
}

// ---------------------------------------------------------------------------------------------
// Meter readings
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/{production,consumption,storage}_meter_readings`: the last cumulative register
/// reading of each meter at or before `end_at` (§4.14).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MeterReadings {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// One reading per meter, retired meters included.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub meter_readings: Vec<MeterReading>,
    /// System status and report times.
    #[serde(deserialize_with = "lenient::opt_struct")]
    pub meta: Option<Meta>,
}

/// `production_meter_readings` (readings keyed `serial_number`, with `value`).
pub type ProductionMeterReadings = MeterReadings;
/// `consumption_meter_readings` (readings keyed `serial_num`, with `value`).
pub type ConsumptionMeterReadings = MeterReadings;
/// `storage_meter_readings` (readings keyed `serial_num`, with `value_charged`/`value_discharged`).
pub type StorageMeterReadings = MeterReadings;

/// One meter's cumulative reading. The serial is read from `serial_number` or `serial_num`
/// (the endpoints disagree).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "RawMeterReading")]
pub struct MeterReading {
    /// The meter's serial number.
    pub serial_number: Option<String>,
    /// Production/consumption register, Wh.
    pub value: Option<i64>,
    /// Storage: energy charged register, Wh.
    pub value_charged: Option<i64>,
    /// Storage: energy discharged register, Wh.
    pub value_discharged: Option<i64>,
    /// Epoch seconds of the reading (≤ the requested `end_at`; old for retired meters).
    pub read_at: Option<i64>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct RawMeterReading {
    #[serde(deserialize_with = "lenient::opt_string")]
    serial_number: Option<String>,
    #[serde(deserialize_with = "lenient::opt_string")]
    serial_num: Option<String>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    value: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    value_charged: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    value_discharged: Option<i64>,
    #[serde(deserialize_with = "lenient::opt_i64")]
    read_at: Option<i64>,
}

impl From<RawMeterReading> for MeterReading {
    fn from(raw: RawMeterReading) -> Self {
        Self {
            serial_number: raw.serial_number.or(raw.serial_num),
            value: raw.value,
            value_charged: raw.value_charged,
            value_discharged: raw.value_discharged,
            read_at: raw.read_at,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Inverters summary
// ---------------------------------------------------------------------------------------------

/// `GET /systems/inverters_summary_by_envoy_or_site`: the top level is an ARRAY, one entry per
/// gateway (§4.15). A top-level object is read as a one-gateway list; other shapes are an error.
#[derive(Debug, Clone, Default)]
pub struct InvertersSummary(pub Vec<InverterGroup>);

impl InvertersSummary {
    /// Every micro of every gateway.
    pub fn micro_inverters(&self) -> impl Iterator<Item = &MicroInverter> {
        self.0.iter().flat_map(|group| group.micro_inverters.iter())
    }
}

impl<'de> Deserialize<'de> for InvertersSummary {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            value @ (Value::Array(_) | Value::Object(_)) => Ok(Self(lenient::vec_from_value(value))),
            other => Err(de::Error::custom(format!("expected an array of gateways, found {}", json_kind(&other)))),
        }
    }
}

/// The micros behind one gateway.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct InverterGroup {
    /// Gateway signal strength.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub signal_strength: Option<i64>,
    /// The micros.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub micro_inverters: Vec<MicroInverter>,
}

/// One micro's lifetime energy and last power.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MicroInverter {
    /// Numeric id.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub id: Option<i64>,
    /// Serial number.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub serial_number: Option<String>,
    /// Model.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub model: Option<String>,
    /// Part number.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub part_number: Option<String>,
    /// SKU.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub sku: Option<String>,
    /// Status.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Last power, W, from `{"value", "units", "precision"}` or a bare number.
    #[serde(deserialize_with = "lenient::opt_value_or_object")]
    pub power_produced: Option<i64>,
    /// Processor load.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub proc_load: Option<String>,
    /// Parameter table.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub param_table: Option<String>,
    /// Serial of the gateway it reports to.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub envoy_serial_number: Option<String>,
    /// Lifetime energy, Wh, from `{"value", "units", "precision"}` or a bare number.
    #[serde(deserialize_with = "lenient::opt_value_or_object")]
    pub energy: Option<i64>,
    /// Grid profile.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub grid_profile: Option<String>,
    /// Epoch seconds of its last report (an RFC 3339 string is converted).
    #[serde(deserialize_with = "lenient::opt_epoch")]
    pub last_report_date: Option<i64>,
}

// ---------------------------------------------------------------------------------------------
// Events and alarms
// ---------------------------------------------------------------------------------------------

/// `GET /systems/{id}/events` and `/open_events` (§4.16).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Events {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// The events.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub events: Vec<Event>,
}

/// One system event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Event {
    /// `open` or `Closed` (case varies).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub status: Option<String>,
    /// Event type, see `/systems/event_types`.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub event_type_id: Option<i64>,
    /// Epoch seconds.
    #[serde(deserialize_with = "lenient::opt_epoch")]
    pub event_start_time: Option<i64>,
    /// Epoch seconds; null while open.
    #[serde(deserialize_with = "lenient::opt_epoch")]
    pub event_end_time: Option<i64>,
    /// The device concerned.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub serial_number: Option<String>,
}

impl Event {
    /// Whether the event is still open: `status` is "open" in any case, or, without a status, it
    /// has no end time.
    pub fn is_open(&self) -> bool {
        match self.status.as_deref() {
            Some(status) => status.trim().eq_ignore_ascii_case("open"),
            None => self.event_end_time.is_none(),
        }
    }
}

/// `GET /systems/{id}/alarms` and `/open_alarms` (§4.16).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Alarms {
    /// The system.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub system_id: Option<i64>,
    /// The alarms.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub alarms: Vec<Alarm>,
}

/// One alarm, grouping the events behind it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Alarm {
    /// Alarm id (a string in the spec).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub id: Option<String>,
    /// Whether it has cleared.
    #[serde(deserialize_with = "lenient::opt_bool")]
    pub cleared: Option<bool>,
    /// Severity.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub severity: Option<i64>,
    /// The device events behind the alarm.
    #[serde(deserialize_with = "lenient::vec_skip_invalid")]
    pub events: Vec<AlarmEvent>,
    /// Event type, see `/systems/event_types`.
    #[serde(deserialize_with = "lenient::opt_i64")]
    pub event_type_id: Option<i64>,
    /// Epoch seconds.
    #[serde(deserialize_with = "lenient::opt_epoch")]
    pub alarm_start_time: Option<i64>,
    /// Epoch seconds; null while active.
    #[serde(deserialize_with = "lenient::opt_epoch")]
    pub alarm_end_time: Option<i64>,
}

/// A device event within an alarm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AlarmEvent {
    /// The device concerned.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub serial_number: Option<String>,
    /// Start, as sent (a number is written out as text).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub start_date: Option<String>,
    /// End, as sent; null while active.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub end_date: Option<String>,
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::de::DeserializeOwned;
    use serde_json::json;

    fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, serde_json::Error> {
        serde_json::from_value(value)
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn daily_series_pairs_days_and_keeps_positions() {
        let days = daily_series(Some("2025-02-27"), &[Some(10), None, Some(30)]);
        assert_eq!(
            days,
            vec![DailyWh { date: date("2025-02-27"), wh: 10 }, DailyWh { date: date("2025-03-01"), wh: 30 },],
            "the unreadable 28 Feb is skipped, 1 March stays 1 March"
        );
        assert!(daily_series(None, &[Some(1)]).is_empty());
        assert!(daily_series(Some("soon"), &[Some(1)]).is_empty());
        assert_eq!(daily_series(Some("2025-06-10T00:00:00Z"), &[Some(5)])[0].date, date("2025-06-10"));
    }

    #[test]
    fn has_more_follows_the_formula_and_always_ends() {
        let page = |current, size, total, n: usize| SystemsPage {
            total: Some(total),
            current_page: Some(current),
            size: Some(size),
            count: Some(n as i64),
            items: None,
            systems: vec![System::default(); n],
        };
        assert!(page(1, 10, 25, 10).has_more());
        assert!(page(2, 10, 25, 10).has_more());
        assert!(!page(3, 10, 25, 5).has_more());
        assert!(!page(1, 10, 10, 10).has_more());
        assert!(!page(1, 10, 25, 0).has_more(), "an empty page ends the loop");
        assert!(!page(1, 0, 25, 3).has_more(), "size 0 would never advance");
        assert!(!SystemsPage::default().has_more());
    }

    #[test]
    fn evse_power_flattens_single_key_maps() {
        let s: Summary = from_value(json!({
            "evse_power": [
                {"EV0001": {"evse_max_charge_w": 7200, "evse_min_charge_w": 1400}},
                {"EV0002": {"evse_max_charge_w": "11000"}},
                {"serial_number": "EV0003", "evse_max_charge_w": 3600},
                "junk",
                {"EV0004": 5}
            ]
        }))
        .unwrap();
        assert_eq!(s.evse_power.len(), 3);
        assert_eq!(s.evse_power[0].serial_number, "EV0001");
        assert_eq!(s.evse_power[0].evse_min_charge_w, Some(1400));
        assert_eq!(s.evse_power[1].evse_max_charge_w, Some(11000));
        assert_eq!(s.evse_power[1].evse_min_charge_w, None);
        assert_eq!(s.evse_power[2].serial_number, "EV0003");
        let none: Summary = from_value(json!({"evse_power": null})).unwrap();
        assert!(none.evse_power.is_empty());
    }

    #[test]
    fn latest_devices_read_either_heat_pump_key() {
        let hyphen: LatestTelemetry =
            from_value(json!({"devices": {"heat-pump": [{"id": 1, "power": 900, "operational_mode": "MODE_2"}]}}))
                .unwrap();
        assert_eq!(hyphen.devices.heat_pump[0].power, Some(900));
        let underscore: LatestTelemetry =
            from_value(json!({"devices": {"heat_pump": [{"id": 1, "power": 800}]}})).unwrap();
        assert_eq!(underscore.devices.heat_pump[0].power, Some(800));
        let both: LatestTelemetry = from_value(json!({"devices": {
            "heat-pump": [{"power": 1}], "heat_pump": [{"power": 2}]
        }}))
        .unwrap();
        assert_eq!(both.devices.heat_pump, vec![LatestReading { power: Some(1), ..Default::default() }]);
        let broken: LatestTelemetry = from_value(json!({"system_id": 7, "devices": "none"})).unwrap();
        assert_eq!(broken.system_id, Some(7));
        assert!(broken.devices.meters.is_empty());
    }

    #[test]
    fn import_export_interval_takes_either_name() {
        let i: ImportExportInterval = from_value(json!({"end_at": 1, "wh_imported": 40})).unwrap();
        assert_eq!(i.wh, Some(40));
        let e: ImportExportInterval = from_value(json!({"end_at": 1, "wh_exported": 41})).unwrap();
        assert_eq!(e.wh, Some(41));
        let none: ImportExportInterval = from_value(json!({"end_at": 1})).unwrap();
        assert_eq!((none.end_at, none.wh), (Some(1), None));
    }

    #[test]
    fn meter_reading_takes_either_serial_key() {
        let a: MeterReading = from_value(json!({"serial_number": "A", "value": 1})).unwrap();
        let b: MeterReading = from_value(json!({"serial_num": "B", "value": "2"})).unwrap();
        assert_eq!((a.serial_number.as_deref(), a.value), (Some("A"), Some(1)));
        assert_eq!((b.serial_number.as_deref(), b.value), (Some("B"), Some(2)));
    }

    #[test]
    fn micros_telemetry_reads_list_and_map_shapes() {
        let list: MicrosTelemetry = from_value(json!({
            "total_devices": 25, "page": 1, "page_size": 10,
            "devices": [{"serial_number": "M1", "intervals": [{"end_at": 1, "powr": 30, "enwh": 40}]}]
        }))
        .unwrap();
        assert_eq!(list.size, Some(10));
        assert_eq!(list.devices[0].serial_number.as_deref(), Some("M1"));
        assert_eq!(list.devices[0].intervals[0].enwh, Some(40));
        assert!(list.has_more());
        let map: MicrosTelemetry = from_value(json!({
            "micros": {"M2": [{"end_at": 1, "powr": 5}], "M3": {"intervals": [{"end_at": 1, "powr": 6}]}, "M4": 1}
        }))
        .unwrap();
        assert_eq!(map.devices.len(), 2);
        assert!(!map.has_more(), "no page numbers, no more pages");
    }

    #[test]
    fn event_is_open_ignores_case() {
        let ev = |status: Option<&str>, end: Option<i64>| Event {
            status: status.map(str::to_owned),
            event_end_time: end,
            ..Default::default()
        };
        assert!(ev(Some("open"), None).is_open());
        assert!(ev(Some("OPEN"), None).is_open());
        assert!(ev(Some(" Open "), Some(5)).is_open(), "status wins over the end time");
        assert!(!ev(Some("Closed"), Some(5)).is_open());
        assert!(!ev(Some("closed"), None).is_open());
        assert!(ev(None, None).is_open());
        assert!(!ev(None, Some(5)).is_open());
    }

    #[test]
    fn inverters_summary_rejects_unusable_top_level() {
        assert!(from_value::<InvertersSummary>(json!("nope")).is_err());
        assert!(from_value::<InvertersSummary>(json!(null)).is_err());
        let single: InvertersSummary = from_value(json!({"signal_strength": 3, "micro_inverters": []})).unwrap();
        assert_eq!(single.0.len(), 1);
    }
}
