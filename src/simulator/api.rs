//! Handlers of the Monitoring API v4 (`/api/v4/...`). Each builds its JSON with `json!` from the
//! fleet model, following the field names and quirks of the API reference and the fixtures.
//! Authentication, quota and faults were already dealt with by the gate.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use serde_json::{Map, Value, json};

use super::Simulator;
use super::errors::{self, Rejection, echo};
use super::model::{METER_STEP, MICRO_STEP, SimSystem, SystemKind};
use super::params::Params;
use super::places::Region;

/// Oldest telemetry start accepted, seconds before now ("within the last 2 years").
const TWO_YEARS_SECS: i64 = 2 * 365 * 86_400;
/// Longest `/events` or `/alarms` window, seconds.
const MAX_EVENT_WINDOW_SECS: i64 = 7 * 86_400;
/// `event_type_id` of "microinverter not reporting".
const MICRO_NOT_REPORTING_EVENT: i64 = 1146;
/// `event_type_id` of "gateway not reporting".
const GATEWAY_NOT_REPORTING_EVENT: i64 = 611;

type ApiResult = Result<Value, Rejection>;

/// Picks one figure out of a day's totals.
type PickTotal = fn(super::model::Totals) -> i64;

/// The path parameters of a system route: `{sid}` and, on device routes, `{serial}`.
/// A path that cannot be decoded is answered with the JSON 404 instead of axum's plain 400.
pub(crate) struct SysPath {
    sid: String,
    serial: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for SysPath {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(mut map) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| errors::resource_not_found())?;
        Ok(SysPath { sid: map.remove("sid").unwrap_or_default(), serial: map.remove("serial") })
    }
}

/// Everything a system handler needs.
struct Ctx<'a> {
    sys: &'a SimSystem,
    params: Params,
    now: i64,
    serial: Option<String>,
}

fn respond(result: ApiResult) -> Response {
    match result {
        Ok(body) => Json(body).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}

/// Resolves the system of `path` (404 when unknown) and runs `f` on it.
fn with_system(sim: &Simulator, path: SysPath, query: Option<String>, f: fn(&Ctx<'_>) -> ApiResult) -> Response {
    let sys = match find_system(sim, &path.sid) {
        Ok(sys) => sys,
        Err(rejection) => return rejection.into_response(),
    };
    let ctx = Ctx { sys, params: Params::parse(query.as_deref()), now: sim.now_secs(), serial: path.serial };
    respond(f(&ctx))
}

fn find_system<'a>(sim: &'a Simulator, raw: &str) -> Result<&'a SimSystem, Rejection> {
    raw.trim().parse::<u64>().ok().and_then(|id| sim.fleet().get(id)).ok_or_else(|| errors::system_not_found(raw))
}

/// Declares a handler for a system route that delegates to a builder function.
macro_rules! system_handler {
    ($($name:ident => $builder:ident),* $(,)?) => {
        $(
            pub(crate) async fn $name(
                State(sim): State<Simulator>,
                path: SysPath,
                RawQuery(query): RawQuery,
            ) -> Response {
                with_system(&sim, path, query, $builder)
            }
        )*
    };
}

system_handler! {
    system => system_body,
    summary => summary_body,
    devices => devices_body,
    latest_telemetry => latest_telemetry_body,
    production_micro => production_micro_body,
    production_meter => production_meter_body,
    consumption_meter => consumption_meter_body,
    battery_telemetry => battery_telemetry_body,
    import_telemetry => import_telemetry_body,
    export_telemetry => export_telemetry_body,
    energy_lifetime => energy_lifetime_body,
    consumption_lifetime => consumption_lifetime_body,
    battery_lifetime => battery_lifetime_body,
    import_lifetime => import_lifetime_body,
    export_lifetime => export_lifetime_body,
    production_meter_readings => production_readings_body,
    consumption_meter_readings => consumption_readings_body,
    storage_meter_readings => storage_readings_body,
    micros_telemetry => micros_telemetry_body,
    micro_telemetry => micro_telemetry_body,
    encharge_telemetry => encharge_telemetry_body,
    events => events_body,
    alarms => alarms_body,
    open_events => open_events_body,
    open_alarms => open_alarms_body,
}

// ----- shared pieces ---------------------------------------------------------------------------

fn date_string(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

fn percent(soc: i64) -> String {
    format!("{soc}%")
}

/// The `meta` object.
fn meta(sys: &SimSystem, now: i64) -> Value {
    let visible = sys.last_upload_at(now);
    json!({
        "status": sys.status(now),
        "last_report_at": visible,
        "last_energy_at": sys.last_producing_end(visible, sys.source_step()),
        "operational_at": sys.operational_at(),
    })
}

/// One system object of `/systems` and `/systems/{sid}`.
fn system_json(sys: &SimSystem, now: i64) -> Value {
    let place = sys.place();
    let visible = sys.last_upload_at(now);
    json!({
        "system_id": sys.system_id(),
        "name": sys.name(),
        "public_name": "Residential System",
        "timezone": sys.timezone(),
        "address": {
            "city": place.city,
            "state": place.state,
            "country": place.country,
            "postal_code": place.postal_code,
        },
        "connection_type": sys.connection().as_str(),
        "energy_lifetime": -1,
        "energy_today": -1,
        "system_size": -1,
        "status": sys.status(now),
        "last_report_at": visible,
        "last_energy_at": sys.last_producing_end(visible, sys.source_step()),
        "operational_at": sys.operational_at(),
        "attachment_type": sys.attachment_type(),
        "interconnect_date": sys.interconnect_date().map(date_string),
    })
}

/// A telemetry window (reference §4.6).
struct Window {
    start: i64,
    end: i64,
    granularity: &'static str,
    start_key: (&'static str, Value),
    end_key: (&'static str, Value),
}

fn window(ctx: &Ctx<'_>, step: i64) -> Result<Window, Rejection> {
    let (sys, params, now) = (ctx.sys, &ctx.params, ctx.now);
    let (granularity, span) = match params.get("granularity").unwrap_or("day") {
        "5mins" => ("5mins", 300),
        "15mins" => ("15mins", 900),
        "day" => ("day", 86_400),
        "week" => ("week", 7 * 86_400),
        other => {
            return Err(errors::unprocessable(format!("Invalid granularity {}", echo(other))));
        }
    };
    let (requested, from_date) = if let Some(t) = params.epoch("start_at")? {
        (t, None)
    } else if let Some(date) = params.date("start_date")? {
        (sys.midnight(date), Some(date))
    } else {
        (sys.midnight(sys.local_date(now)), None)
    };
    let first = sys.first_interval(step);
    let last = sys.last_interval(now, step);
    if requested > now || requested < now - TWO_YEARS_SECS {
        return Err(errors::invalid_range(requested, now.min(requested + span), first, last));
    }
    // A start before the first report means midnight of the first report day.
    let start = requested.max(sys.operational_at());
    let mut end = now.min(start + span);
    let mut end_key = None;
    if let Some(t) = params.epoch("end_at")? {
        end = end.min(t);
    } else if let Some(date) = params.date("end_date")? {
        end = end.min(sys.day_end(date));
        end_key = Some(("end_date", json!(date_string(date))));
    }
    if end < start {
        return Err(errors::invalid_range(start, end, first, last));
    }
    let start_key = match from_date {
        Some(date) => ("start_date", json!(date_string(date))),
        None => ("start_at", json!(start)),
    };
    Ok(Window { start, end, granularity, start_key, end_key: end_key.unwrap_or(("end_at", json!(end))) })
}

impl Window {
    /// The common envelope: `system_id`, `granularity`, `total_devices`, start, end, `items`.
    fn head(&self, sys: &SimSystem, total_devices: usize) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("system_id".into(), json!(sys.system_id()));
        map.insert("granularity".into(), json!(self.granularity));
        map.insert("total_devices".into(), json!(total_devices));
        map.insert(self.start_key.0.into(), self.start_key.1.clone());
        map.insert(self.end_key.0.into(), self.end_key.1.clone());
        map.insert("items".into(), json!("intervals"));
        map
    }

    /// Last interval end that may be shown: inside the window and already uploaded.
    fn until(&self, sys: &SimSystem, now: i64) -> i64 {
        self.end.min(sys.last_upload_at(now))
    }
}

/// A range of local dates for the daily lifetime series (reference §4.13).
fn day_range(ctx: &Ctx<'_>) -> Result<Vec<NaiveDate>, Rejection> {
    let sys = ctx.sys;
    let today = sys.local_date(ctx.now);
    let start = ctx.params.date("start_date")?.unwrap_or(sys.operational_date());
    if start > today {
        return Err(errors::unprocessable("Requested date is in the future"));
    }
    let default_end = if start == today { today } else { today.pred_opt().unwrap_or(today) };
    let end = ctx.params.date("end_date")?.unwrap_or(default_end).min(today);
    let start = start.max(sys.operational_date());
    if end < start {
        return Err(errors::unprocessable("Requested date range is invalid for this system"));
    }
    Ok(start.iter_days().take_while(|d| *d <= end).collect())
}

/// Head of a lifetime series: `system_id` and `start_date` (null when there are no days).
fn lifetime_head(sys: &SimSystem, days: &[NaiveDate]) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("system_id".into(), json!(sys.system_id()));
    map.insert("start_date".into(), json!(days.first().map(|d| date_string(*d))));
    map
}

// ----- system details --------------------------------------------------------------------------

/// `GET /api/v4/systems`.
pub(crate) async fn systems(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    respond(systems_body(&sim, &Params::parse(query.as_deref())))
}

fn systems_body(sim: &Simulator, params: &Params) -> ApiResult {
    let page = params.int("page")?.unwrap_or(1);
    let size = params.int("size")?.unwrap_or(10);
    if page < 1 {
        return Err(errors::unprocessable("page must be 1 or more"));
    }
    if !(1..=100).contains(&size) {
        return Err(errors::unprocessable("size must be between 1 and 100"));
    }
    let descending = match params.get("sort_by") {
        None | Some("id") => false,
        Some("-id") => true,
        Some(other) => {
            return Err(errors::unprocessable(format!("Invalid sort_by {}", echo(other))));
        }
    };
    let now = sim.now_secs();
    let fleet = sim.fleet().systems();
    let skip = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let take = size as usize;
    let page_items: Vec<Value> = if descending {
        fleet.iter().rev().skip(skip).take(take).map(|s| system_json(s, now)).collect()
    } else {
        fleet.iter().skip(skip).take(take).map(|s| system_json(s, now)).collect()
    };
    Ok(json!({
        "total": fleet.len(),
        "current_page": page,
        "size": size,
        "count": page_items.len(),
        "items": "systems",
        "systems": page_items,
    }))
}

/// `GET /api/v4/systems/retrieve_system_id`.
pub(crate) async fn retrieve_system_id(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.as_deref());
    let Some(serial) = params.get("serial_num").filter(|s| !s.is_empty()) else {
        return errors::unprocessable("serial_num is required").into_response();
    };
    match sim.fleet().by_gateway_serial(serial) {
        Some(sys) => Json(json!({ "system_id": sys.system_id() })).into_response(),
        None => errors::device_not_found("Envoy", serial).into_response(),
    }
}

fn system_body(ctx: &Ctx<'_>) -> ApiResult {
    Ok(system_json(ctx.sys, ctx.now))
}

fn summary_body(ctx: &Ctx<'_>) -> ApiResult {
    let (sys, now) = (ctx.sys, ctx.now);
    let today = sys.local_date(now);
    let date = ctx.params.date("summary_date")?.unwrap_or(today);
    if date > today {
        return Err(errors::unprocessable("Requested date is in the future"));
    }
    let is_today = date == today;
    let visible = sys.last_upload_at(now);
    let (energy_today, energy_lifetime) = sys.summary_energy(now, date);
    let battery = sys.has_battery();
    Ok(json!({
        "system_id": sys.system_id(),
        "current_power": if is_today { sys.current_power(now) } else { 0 },
        "energy_lifetime": energy_lifetime,
        "energy_today": energy_today,
        "last_interval_end_at": sys.last_producing_end(visible, sys.source_step()).unwrap_or(sys.operational_at()),
        "last_report_at": visible,
        "modules": if is_today { sys.micros().len() } else { 0 },
        "operational_at": sys.operational_at(),
        "size_w": if is_today { sys.size_w() } else { 0 },
        "nmi": sys.nmi(),
        "source": sys.source(),
        "status": sys.status(now),
        "summary_date": date_string(date),
        "battery_charge_w": if battery { super::model::BATTERY_MAX_W } else { 0 },
        "battery_discharge_w": if battery { super::model::BATTERY_MAX_W } else { 0 },
        "battery_capacity_wh": if battery { super::model::BATTERY_CAPACITY_WH } else { 0 },
        "evse_power": [],
    }))
}

fn devices_body(ctx: &Ctx<'_>) -> ApiResult {
    let (sys, now) = (ctx.sys, ctx.now);
    let us = sys.place().region == Region::Us;
    let visible = sys.last_upload_at(now);
    let mut devices = Map::new();

    let (micro_sku, micro_model, micro_part) =
        if us { ("IQ8PLUS-72-2-US", "IQ8PLUS", "800-01135-r02") } else { ("IQ8AC-72-M-INT", "IQ8AC", "800-01736-r02") };
    let micros: Vec<Value> = sys
        .micros()
        .iter()
        .enumerate()
        .map(|(j, m)| {
            let dead = sys.dead_micro().is_some_and(|d| d.index == j && now >= d.at);
            json!({
                "id": m.id,
                "last_report_at": sys.micro_last_report(j, now),
                "name": format!("Microinverter {}", m.serial),
                "serial_number": m.serial,
                "part_number": micro_part,
                "sku": micro_sku,
                "model": micro_model,
                "status": if dead { "micro" } else { "normal" },
                "active": true,
                "product_name": micro_model,
                "feoc_compliant": true,
                "dom_compliant": us,
            })
        })
        .collect();
    let mut total = micros.len();
    devices.insert("micros".into(), Value::Array(micros));

    if let Some(meters) = sys.meters() {
        let last = sys.meter_last_report(now);
        let meter = |id: u64, name: &str, suffix: &str, config: &str| {
            json!({
                "id": id,
                "last_report_at": last,
                "name": name,
                "serial_number": format!("{}{suffix}", sys.gateway().serial),
                "part_number": "800-00664-r05",
                "sku": null,
                "model": "IQ Gateway",
                "status": "normal",
                "active": true,
                "state": "enabled",
                "config_type": config,
                "config_phase": sys.config_phase(),
                "product_name": "IQ Gateway",
            })
        };
        devices.insert(
            "meters".into(),
            json!([
                meter(meters.production_id, "production", "EIM1", "Production"),
                meter(meters.consumption_id, "consumption", "EIM2", "Net"),
            ]),
        );
        total += 2;
    }

    let gw = sys.gateway();
    let (gw_sku, gw_model, gw_product) = match (sys.has_meters(), us) {
        (true, true) => ("ENV-IQ-AM1-240", "Envoy-S-Metered-NA", "IQ Gateway Metered"),
        (true, false) => ("ENV-S-WM-230", "Envoy-S-Metered-EU", "IQ Gateway Metered"),
        (false, true) => ("ENV-S-AB-120-A", "Envoy-S-Standard-NA", "IQ Gateway Standard"),
        (false, false) => ("ENV-S-WB-230", "Envoy-S-Standard-EU", "IQ Gateway Standard"),
    };
    let mut gateway = json!({
        "id": gw.id,
        "last_report_at": visible,
        "name": format!("Gateway {}", gw.serial),
        "serial_number": gw.serial,
        "part_number": "800-00664-r05",
        "emu_sw_version": gw.firmware,
        "sku": gw_sku,
        "model": gw_model,
        "status": "normal",
        "active": true,
        "product_name": gw_product,
    });
    if let (Some(imei), Some(map)) = (&gw.imei, gateway.as_object_mut()) {
        let op = sys.operational_date();
        let plan_end = op.checked_add_months(chrono::Months::new(60)).unwrap_or(op);
        map.insert(
            "cellular_modem".into(),
            json!({
                "imei": imei,
                "part_num": "800-00698-r02",
                "sku": "CELLMODEM-M1-06-SP-05",
                "plan_start_date": date_string(op),
                "plan_end_date": date_string(plan_end),
            }),
        );
    }
    devices.insert("gateways".into(), json!([gateway]));
    total += 1;

    if let Some(battery) = sys.battery() {
        let last = sys.meter_last_report(now);
        devices.insert(
            "encharges".into(),
            json!([{
                "id": battery.id,
                "last_report_at": last,
                "name": format!("IQ Battery {}", battery.serial),
                "serial_number": battery.serial,
                "part_number": "836-01021-r03",
                "sku": if us { "IQBATTERY-5P-1P-NA" } else { "IQBATTERY-5P-1P-INT" },
                "model": "",
                "status": "normal",
                "active": true,
                "product_name": "IQ Battery 5P",
                "feoc_compliant": true,
                "dom_compliant": us,
            }]),
        );
        devices.insert(
            "enpowers".into(),
            json!([{
                "id": battery.enpower_id,
                "last_report_at": last,
                "name": format!("IQ System Controller {}", battery.enpower_serial),
                "serial_number": battery.enpower_serial,
                "part_number": "865-00400-r22",
                "sku": if us { "SC200D111C240US01" } else { "SC200G111C230RW01" },
                "model": "",
                "status": "normal",
                "active": true,
                "product_name": "IQ System Controller 2",
            }]),
        );
        total += 2;
    }

    Ok(json!({
        "system_id": sys.system_id(),
        "total_devices": total,
        "items": "devices",
        "devices": devices,
    }))
}

/// Share of `power` on phase `channel` (1-based) of `phases`; the first phase takes the remainder.
fn phase_share(power: i64, phases: usize, channel: usize) -> i64 {
    let n = phases.max(1) as i64;
    let base = power / n;
    if channel == 1 { power - base * (n - 1) } else { base }
}

/// `latest_telemetry`. Micro-only systems answer `devices: {"meters": [], "encharges": []}`.
fn latest_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    let (sys, now) = (ctx.sys, ctx.now);
    let last = sys.last_meter_bucket(now);
    let reported_at = sys.meter_last_report(now);
    let mut meters = Vec::new();
    if let Some(ids) = sys.meters() {
        let production = last.map_or(0, |b| b.production * 4);
        // §4.11: a Net CT's consumption figure is production + grid and leaves the battery out,
        // so on a battery site it is not the house's load (the load is this plus what the
        // battery gives). Without a battery the two are the same.
        let consumption = last.map_or(0, |b| (b.production + b.grid()) * 4);
        for (id, name, power) in
            [(ids.production_id, "production", production), (ids.consumption_id, "consumption", consumption)]
        {
            for channel in 1..=3 {
                let used = channel <= sys.phases();
                meters.push(json!({
                    "id": id,
                    "name": name,
                    "channel": channel,
                    "last_report_at": if used { reported_at } else { None },
                    "power": used.then(|| phase_share(power, sys.phases(), channel)),
                }));
            }
        }
    }
    let encharges: Vec<Value> = sys
        .battery()
        .map(|battery| {
            // Positive while discharging, negative while charging (the live_data convention).
            let power = last.map_or(0, |b| (b.discharge - b.charge) * 4);
            let mode = match power {
                p if p > 0 => "Discharging",
                p if p < 0 => "Charging",
                _ => "Idle",
            };
            json!({
                "id": battery.id,
                "name": format!("Encharge {}", battery.serial),
                "channel": 1,
                "last_report_at": reported_at,
                "power": power,
                "operational_mode": mode,
            })
        })
        .into_iter()
        .collect();
    Ok(json!({
        "system_id": sys.system_id(),
        "items": "devices",
        "devices": { "meters": meters, "encharges": encharges },
    }))
}

// ----- interval telemetry ---------------------------------------------------------------------

fn production_micro_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let w = window(ctx, MICRO_STEP)?;
    let intervals: Vec<Value> = sys
        .micro_buckets(w.start, w.until(sys, ctx.now))
        .iter()
        .map(|b| json!({ "end_at": b.end, "devices_reporting": b.reporting, "powr": b.powr, "enwh": b.enwh }))
        .collect();
    let mut body = w.head(sys, sys.micros().len());
    body.insert("intervals".into(), Value::Array(intervals));
    body.insert("meta".into(), meta(sys, ctx.now));
    Ok(Value::Object(body))
}

/// Meter intervals of the window, or none on a system without meters (200 with `[]`).
fn meter_window(ctx: &Ctx<'_>) -> Result<(Window, Vec<super::model::MeterBucket>), Rejection> {
    let w = window(ctx, METER_STEP)?;
    let buckets =
        if ctx.sys.has_meters() { ctx.sys.meter_buckets(w.start, w.until(ctx.sys, ctx.now)) } else { Vec::new() };
    Ok((w, buckets))
}

fn production_meter_body(ctx: &Ctx<'_>) -> ApiResult {
    let (w, buckets) = meter_window(ctx)?;
    let intervals: Vec<Value> =
        buckets.iter().map(|b| json!({ "end_at": b.end, "devices_reporting": 1, "wh_del": b.production })).collect();
    let mut body = w.head(ctx.sys, usize::from(ctx.sys.has_meters()));
    body.insert("intervals".into(), Value::Array(intervals));
    Ok(Value::Object(body))
}

fn consumption_meter_body(ctx: &Ctx<'_>) -> ApiResult {
    let (w, buckets) = meter_window(ctx)?;
    let intervals: Vec<Value> =
        buckets.iter().map(|b| json!({ "end_at": b.end, "devices_reporting": 1, "enwh": b.consumption })).collect();
    let mut body = w.head(ctx.sys, usize::from(ctx.sys.has_meters()));
    body.insert("intervals".into(), Value::Array(intervals));
    body.insert("meta".into(), meta(ctx.sys, ctx.now));
    Ok(Value::Object(body))
}

fn battery_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let w = window(ctx, METER_STEP)?;
    let buckets = if sys.has_battery() { sys.meter_buckets(w.start, w.until(sys, ctx.now)) } else { Vec::new() };
    let intervals: Vec<Value> = buckets
        .iter()
        .map(|b| {
            json!({
                "end_at": b.end,
                "charge": { "enwh": b.charge, "devices_reporting": 1 },
                "discharge": { "enwh": b.discharge, "devices_reporting": 1 },
                "soc": { "percent": b.soc, "devices_reporting": 1 },
            })
        })
        .collect();
    let mut body = w.head(sys, usize::from(sys.has_battery()));
    body.insert("intervals".into(), Value::Array(intervals));
    body.insert(
        "last_reported_aggregate_soc".into(),
        json!(sys.has_battery().then(|| percent(sys.battery_soc(ctx.now)))),
    );
    Ok(Value::Object(body))
}

/// Import or export telemetry with the spec quirk: `intervals` is an array holding one array
/// (`[]` when there is nothing to show); `total_devices` is always 0.
fn grid_telemetry(ctx: &Ctx<'_>, import: bool) -> ApiResult {
    let (w, buckets) = meter_window(ctx)?;
    let field = if import { "wh_imported" } else { "wh_exported" };
    let inner: Vec<Value> = buckets
        .iter()
        .map(|b| json!({ "end_at": b.end, field: if import { b.import() } else { b.export() } }))
        .collect();
    let mut body = w.head(ctx.sys, 0);
    let intervals = if inner.is_empty() { json!([]) } else { json!([inner]) };
    body.insert("intervals".into(), intervals);
    body.insert("meta".into(), meta(ctx.sys, ctx.now));
    Ok(Value::Object(body))
}

fn import_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    grid_telemetry(ctx, true)
}

fn export_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    grid_telemetry(ctx, false)
}

// ----- lifetime series -------------------------------------------------------------------------

fn energy_lifetime_body(ctx: &Ctx<'_>) -> ApiResult {
    let (sys, now) = (ctx.sys, ctx.now);
    let days = day_range(ctx)?;
    let visible = sys.last_upload_at(now);
    let micro: Vec<i64> = days.iter().map(|d| sys.day_visible(*d, visible, MICRO_STEP).production).collect();
    let mut body = lifetime_head(sys, &days);
    match sys.meter_start_date() {
        Some(meter_start) => {
            let meter: Vec<i64> = days
                .iter()
                .map(|d| if *d >= meter_start { sys.day_visible(*d, visible, METER_STEP).production } else { 0 })
                .collect();
            // Production switches from the micros to the meter on the meter's first full day.
            let production: Vec<i64> = days
                .iter()
                .zip(micro.iter().zip(&meter))
                .map(|(d, (m, mt))| if *d >= meter_start { *mt } else { *m })
                .collect();
            body.insert("meter_start_date".into(), json!(date_string(meter_start)));
            body.insert("production".into(), json!(production));
            if ctx.params.get("production") == Some("all") {
                body.insert("micro_production".into(), json!(micro));
                body.insert("meter_production".into(), json!(meter));
            }
        }
        None => {
            body.insert("production".into(), json!(micro));
            if ctx.params.get("production") == Some("all") {
                body.insert("micro_production".into(), json!(micro));
            }
        }
    }
    body.insert("meta".into(), meta(sys, now));
    Ok(Value::Object(body))
}

/// A daily series from the visible totals; empty on systems without the hardware.
fn daily_series(ctx: &Ctx<'_>, present: bool, keys: &[(&str, PickTotal)]) -> ApiResult {
    let (sys, now) = (ctx.sys, ctx.now);
    let days = day_range(ctx)?;
    let visible = sys.last_upload_at(now);
    let totals: Vec<_> =
        if present { days.iter().map(|d| sys.day_visible(*d, visible, METER_STEP)).collect() } else { Vec::new() };
    let mut body = lifetime_head(sys, &days);
    for (key, pick) in keys {
        body.insert((*key).into(), json!(totals.iter().map(|t| pick(*t)).collect::<Vec<_>>()));
    }
    body.insert("meta".into(), meta(sys, now));
    Ok(Value::Object(body))
}

fn consumption_lifetime_body(ctx: &Ctx<'_>) -> ApiResult {
    daily_series(ctx, ctx.sys.has_meters(), &[("consumption", |t| t.consumption)])
}

fn battery_lifetime_body(ctx: &Ctx<'_>) -> ApiResult {
    daily_series(ctx, ctx.sys.has_battery(), &[("charge", |t| t.charge), ("discharge", |t| t.discharge)])
}

fn grid_lifetime(ctx: &Ctx<'_>, import: bool) -> ApiResult {
    let (sys, now) = (ctx.sys, ctx.now);
    let days = day_range(ctx)?;
    let visible = sys.last_upload_at(now);
    let values: Vec<i64> = if sys.has_meters() {
        days.iter()
            .map(|d| {
                let (i, e) = sys.day_import_export(*d, visible);
                if import { i } else { e }
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut body = lifetime_head(sys, &days);
    body.insert((if import { "import" } else { "export" }).into(), json!(values));
    body.insert("meta".into(), meta(sys, now));
    Ok(Value::Object(body))
}

fn import_lifetime_body(ctx: &Ctx<'_>) -> ApiResult {
    grid_lifetime(ctx, true)
}

fn export_lifetime_body(ctx: &Ctx<'_>) -> ApiResult {
    grid_lifetime(ctx, false)
}

// ----- meter readings --------------------------------------------------------------------------

/// Time of the reading for `end_at`: the last visible 15-minute boundary not after it, or
/// `None` before the system's first interval.
fn read_at(ctx: &Ctx<'_>) -> Result<Option<i64>, Rejection> {
    let sys = ctx.sys;
    let end_at = ctx.params.epoch("end_at")?.unwrap_or(ctx.now).min(ctx.now);
    let visible = sys.last_upload_at(ctx.now).div_euclid(METER_STEP) * METER_STEP;
    let at = (end_at.div_euclid(METER_STEP) * METER_STEP).min(visible);
    Ok((at > sys.operational_at()).then_some(at))
}

fn readings_body(ctx: &Ctx<'_>, readings: Vec<Value>) -> ApiResult {
    Ok(json!({
        "system_id": ctx.sys.system_id(),
        "meter_readings": readings,
        "meta": meta(ctx.sys, ctx.now),
    }))
}

fn production_readings_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let mut readings = Vec::new();
    if let (true, Some(at)) = (sys.has_meters(), read_at(ctx)?) {
        readings.push(json!({
            "serial_number": format!("{}EIM1", sys.gateway().serial),
            "value": sys.registers(at).production,
            "read_at": at,
        }));
    }
    readings_body(ctx, readings)
}

fn consumption_readings_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let mut readings = Vec::new();
    if let (true, Some(at)) = (sys.has_meters(), read_at(ctx)?) {
        readings.push(json!({
            "serial_num": format!("{}EIM2", sys.gateway().serial),
            "value": sys.registers(at).consumption,
            "read_at": at,
        }));
    }
    readings_body(ctx, readings)
}

fn storage_readings_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let mut readings = Vec::new();
    if let (true, Some(at)) = (sys.has_battery(), read_at(ctx)?) {
        let registers = sys.registers(at);
        readings.push(json!({
            // The storage meter is a CT channel of the gateway, like the other meters.
            "serial_num": format!("{}EIM4", sys.gateway().serial),
            "value_charged": registers.charged,
            "value_discharged": registers.discharged,
            "read_at": at,
        }));
    }
    readings_body(ctx, readings)
}

// ----- inverters summary and device level ------------------------------------------------------

/// `GET /api/v4/systems/inverters_summary_by_envoy_or_site`: a top-level array with one group.
/// `size` defaults to 100 (the maximum) so that one call lists every micro of a site.
pub(crate) async fn inverters_summary(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    respond(inverters_summary_body(&sim, &Params::parse(query.as_deref())))
}

fn inverters_summary_body(sim: &Simulator, params: &Params) -> ApiResult {
    let sys = if let Some(serial) = params.get("envoy_serial_number").filter(|s| !s.is_empty()) {
        sim.fleet().by_gateway_serial(serial).ok_or_else(|| errors::device_not_found("Envoy", serial))?
    } else if let Some(site) = params.get("site_id").filter(|s| !s.is_empty()) {
        find_system(sim, site)?
    } else {
        return Err(errors::unprocessable("Provide envoy serial number"));
    };
    let page = params.int("page")?.unwrap_or(1);
    let size = params.int("size")?.unwrap_or(100);
    if page < 1 || !(1..=100).contains(&size) {
        return Err(errors::unprocessable("page must be 1 or more and size between 1 and 100"));
    }
    let now = sim.now_secs();
    let place = sys.place();
    let us = place.region == Region::Us;
    let (sku, model, part) =
        if us { ("IQ8PLUS-72-2-US", "IQ8PLUS", "800-01135-r02") } else { ("IQ8AC-72-M-INT", "IQ8AC", "800-01736-r02") };
    let skip = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let micros: Vec<Value> = sys
        .micros()
        .iter()
        .enumerate()
        .skip(skip)
        .take(size as usize)
        .map(|(j, m)| {
            let dead = sys.dead_micro().is_some_and(|d| d.index == j && now >= d.at);
            json!({
                "id": m.id,
                "serial_number": m.serial,
                "model": model,
                "part_number": part,
                "sku": sku,
                "status": if dead { "micro" } else { "normal" },
                "power_produced": { "value": sys.micro_power_w(j, now), "units": "W", "precision": 0 },
                "proc_load": "520-00082-r01-v04.30.32",
                "param_table": "540-00242-r01-v04.30.09",
                "envoy_serial_number": sys.gateway().serial,
                "energy": { "value": sys.micro_lifetime_wh(j, now), "units": "Wh", "precision": 0 },
                "grid_profile": place.grid_profile,
                "last_report_date": sys.micro_last_report(j, now),
            })
        })
        .collect();
    Ok(json!([{ "signal_strength": sys.gateway().signal_strength, "micro_inverters": micros }]))
}

/// Intervals of micro `j`: its share of each site bucket (none while it is not reporting).
fn micro_intervals(sys: &SimSystem, j: usize, w: &Window, now: i64) -> Vec<Value> {
    sys.micro_buckets(w.start, w.until(sys, now))
        .iter()
        .filter_map(|b| {
            let share = sys.micro_share_at(j, b.end);
            (share > 0.0).then(|| {
                json!({
                    "end_at": b.end,
                    "powr": (b.powr as f64 * share).round() as i64,
                    "enwh": (b.enwh as f64 * share).round() as i64,
                })
            })
        })
        .collect()
}

fn micros_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let page = ctx.params.int("page")?.unwrap_or(1);
    let size = ctx.params.int("size")?.unwrap_or(10);
    if page < 1 || !(1..=20).contains(&size) {
        return Err(errors::unprocessable("page must be 1 or more and size between 1 and 20"));
    }
    let w = window(ctx, MICRO_STEP)?;
    let skip = usize::try_from((page - 1).saturating_mul(size)).unwrap_or(usize::MAX);
    let devices: Vec<Value> = sys
        .micros()
        .iter()
        .enumerate()
        .skip(skip)
        .take(size as usize)
        .map(|(j, m)| json!({ "serial_number": m.serial, "intervals": micro_intervals(sys, j, &w, ctx.now) }))
        .collect();
    let mut body = Map::new();
    body.insert("system_id".into(), json!(sys.system_id()));
    body.insert("total_devices".into(), json!(sys.micros().len()));
    body.insert("page".into(), json!(page));
    body.insert("page_size".into(), json!(devices.len()));
    body.insert(w.start_key.0.into(), w.start_key.1.clone());
    body.insert(w.end_key.0.into(), w.end_key.1.clone());
    body.insert("granularity".into(), json!(w.granularity));
    body.insert("items".into(), json!("intervals"));
    body.insert("devices".into(), Value::Array(devices));
    Ok(Value::Object(body))
}

fn micro_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let serial = ctx.serial.as_deref().unwrap_or_default();
    let Some(j) = sys.micros().iter().position(|m| m.serial == serial) else {
        return Err(errors::device_not_found("Micro", serial));
    };
    let w = window(ctx, MICRO_STEP)?;
    let mut body = w.head(sys, 1);
    body.insert("serial_number".into(), json!(serial));
    body.insert("intervals".into(), Value::Array(micro_intervals(sys, j, &w, ctx.now)));
    Ok(Value::Object(body))
}

fn encharge_telemetry_body(ctx: &Ctx<'_>) -> ApiResult {
    let sys = ctx.sys;
    let serial = ctx.serial.as_deref().unwrap_or_default();
    let Some(_battery) = sys.battery().filter(|b| b.serial == serial) else {
        return Err(errors::device_not_found("Encharge", serial));
    };
    let w = window(ctx, METER_STEP)?;
    let intervals: Vec<Value> = sys
        .meter_buckets(w.start, w.until(sys, ctx.now))
        .iter()
        .map(|b| {
            json!({
                "end_at": b.end,
                "charge": { "enwh": b.charge },
                "discharge": { "enwh": b.discharge },
                "soc": { "percent": b.soc },
            })
        })
        .collect();
    let mut body = w.head(sys, 1);
    body.insert("serial_number".into(), json!(serial));
    body.insert("intervals".into(), Value::Array(intervals));
    body.insert("last_reported_time".into(), json!(sys.meter_last_report(ctx.now)));
    body.insert("last_reported_soc".into(), json!(percent(sys.battery_soc(ctx.now))));
    Ok(Value::Object(body))
}

// ----- events and alarms -----------------------------------------------------------------------

/// `[start_time, end_time]` of an events or alarms call.
fn event_window(ctx: &Ctx<'_>) -> Result<(i64, i64), Rejection> {
    let Some(start) = ctx.params.epoch("start_time")? else {
        return Err(errors::unprocessable("start_time is required"));
    };
    if start > ctx.now {
        return Err(errors::unprocessable("Requested date is in the future"));
    }
    let end = ctx.params.epoch("end_time")?.unwrap_or((start + 86_400).min(ctx.now));
    if end < start || end - start > MAX_EVENT_WINDOW_SECS {
        return Err(errors::unprocessable("Requested time range is invalid, it must be at most 7 days"));
    }
    Ok((start, end))
}

/// The open "micro not reporting" event of a system with a dead micro, if it overlaps.
/// The event is still open, so it overlaps every window that ends after it started.
fn dead_micro_event(sys: &SimSystem, now: i64, to: i64) -> Option<Value> {
    let dead = sys.dead_micro().filter(|d| d.at <= to && d.at <= now)?;
    let serial = &sys.micros().get(dead.index)?.serial;
    Some(json!({
        "status": "open",
        "event_type_id": MICRO_NOT_REPORTING_EVENT,
        "event_start_time": dead.at,
        "event_end_time": null,
        "serial_number": serial,
    }))
}

fn dead_micro_alarm(sys: &SimSystem, now: i64, to: i64) -> Option<Value> {
    let dead = sys.dead_micro().filter(|d| d.at <= to && d.at <= now)?;
    let serial = &sys.micros().get(dead.index)?.serial;
    Some(json!({
        "id": (88_100_000 + sys.index()).to_string(),
        "cleared": false,
        "severity": 2,
        "events": [{ "serial_number": serial, "start_date": date_string(dead.date), "end_date": null }],
        "event_type_id": MICRO_NOT_REPORTING_EVENT,
        "alarm_start_time": dead.at,
        "alarm_end_time": null,
    }))
}

fn events_body(ctx: &Ctx<'_>) -> ApiResult {
    let (from, to) = event_window(ctx)?;
    let sys = ctx.sys;
    let mut events: Vec<Value> = sys
        .closed_events(from, to, ctx.now)
        .iter()
        .map(|e| {
            json!({
                "status": "Closed",
                "event_type_id": GATEWAY_NOT_REPORTING_EVENT,
                "event_start_time": e.start,
                "event_end_time": e.end,
                "serial_number": sys.gateway().serial,
            })
        })
        .collect();
    events.extend(dead_micro_event(sys, ctx.now, to));
    Ok(json!({ "system_id": ctx.sys.system_id(), "events": events }))
}

fn alarms_body(ctx: &Ctx<'_>) -> ApiResult {
    let (_, to) = event_window(ctx)?;
    let cleared = ctx.params.bool("cleared")?.unwrap_or(false);
    // Only active alarms exist in the simulation.
    let alarms: Vec<Value> =
        if cleared { Vec::new() } else { dead_micro_alarm(ctx.sys, ctx.now, to).into_iter().collect() };
    Ok(json!({ "system_id": ctx.sys.system_id(), "alarms": alarms }))
}

fn open_events_body(ctx: &Ctx<'_>) -> ApiResult {
    let events: Vec<Value> = dead_micro_event(ctx.sys, ctx.now, ctx.now).into_iter().collect();
    Ok(json!({ "system_id": ctx.sys.system_id(), "events": events }))
}

fn open_alarms_body(ctx: &Ctx<'_>) -> ApiResult {
    let alarms: Vec<Value> = dead_micro_alarm(ctx.sys, ctx.now, ctx.now).into_iter().collect();
    Ok(json!({ "system_id": ctx.sys.system_id(), "alarms": alarms }))
}

/// Short name of a system kind, for `/admin/state`.
pub(crate) fn kind_name(kind: SystemKind) -> &'static str {
    match kind {
        SystemKind::MicroOnly => "micro_only",
        SystemKind::Metered => "metered",
        SystemKind::Battery => "battery",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_share_power_exactly() {
        assert_eq!(phase_share(1000, 3, 1) + 2 * phase_share(1000, 3, 2), 1000);
        assert_eq!(phase_share(641, 2, 1) + phase_share(641, 2, 2), 641);
        assert_eq!(phase_share(5, 1, 1), 5);
    }
}
