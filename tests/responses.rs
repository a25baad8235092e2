//! Every Enlighten fixture in `tests/fixtures/enlighten/` read into its response type through
//! `parse_body`, as the client does, with the spec quirks checked one by one.

use std::path::PathBuf;

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use enphase_mqtt::enlighten::error::{ApiError, RatePeriod, parse_body};
use enphase_mqtt::enlighten::responses::*;

const JSON: Option<&str> = Some("application/json;charset=UTF-8");

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/enlighten")
}

fn bytes(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load<T: DeserializeOwned>(name: &str) -> T {
    parse_body(name, JSON, &bytes(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn load_value(name: &str) -> Value {
    serde_json::from_slice(&bytes(name)).unwrap()
}

fn parse_value<T: DeserializeOwned>(value: &Value) -> T {
    parse_body("test", JSON, value.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

/// Every fixture file is read by one of these, so a new fixture cannot be left untested.
fn parse_any(name: &str) -> Result<(), ApiError> {
    let body = bytes(name);
    let b = body.as_slice();
    match name {
        "systems_list.json" => parse_body::<SystemsPage>(name, JSON, b).map(drop),
        "system_details.json" => parse_body::<System>(name, JSON, b).map(drop),
        "summary.json" | "summary_with_battery.json" | "summary_quirks.json" => {
            parse_body::<Summary>(name, JSON, b).map(drop)
        }
        "devices.json" => parse_body::<Devices>(name, JSON, b).map(drop),
        "latest_telemetry.json" => parse_body::<LatestTelemetry>(name, JSON, b).map(drop),
        "production_micro.json" | "production_micro_empty.json" => {
            parse_body::<ProductionMicro>(name, JSON, b).map(drop)
        }
        "production_meter.json" => parse_body::<ProductionMeter>(name, JSON, b).map(drop),
        "consumption_meter.json" => parse_body::<ConsumptionMeter>(name, JSON, b).map(drop),
        "battery_telemetry.json" => parse_body::<BatteryTelemetry>(name, JSON, b).map(drop),
        "import_telemetry_nested.json" | "import_telemetry_schema_name.json" | "export_telemetry_flat.json" => {
            parse_body::<ImportExportTelemetry>(name, JSON, b).map(drop)
        }
        "energy_lifetime.json" => parse_body::<EnergyLifetime>(name, JSON, b).map(drop),
        "consumption_lifetime.json" => parse_body::<ConsumptionLifetime>(name, JSON, b).map(drop),
        "battery_lifetime.json" => parse_body::<BatteryLifetime>(name, JSON, b).map(drop),
        "import_lifetime.json" => parse_body::<ImportLifetime>(name, JSON, b).map(drop),
        "export_lifetime.json" => parse_body::<ExportLifetime>(name, JSON, b).map(drop),
        "production_meter_readings.json" => parse_body::<ProductionMeterReadings>(name, JSON, b).map(drop),
        "consumption_meter_readings.json" => parse_body::<ConsumptionMeterReadings>(name, JSON, b).map(drop),
        "storage_meter_readings.json" => parse_body::<StorageMeterReadings>(name, JSON, b).map(drop),
        "inverters_summary.json" => parse_body::<InvertersSummary>(name, JSON, b).map(drop),
        "micros_telemetry.json" => parse_body::<MicrosTelemetry>(name, JSON, b).map(drop),
        "micro_telemetry.json" => parse_body::<MicroTelemetry>(name, JSON, b).map(drop),
        "encharge_telemetry.json" => parse_body::<EnchargeTelemetry>(name, JSON, b).map(drop),
        "events.json" => parse_body::<Events>(name, JSON, b).map(drop),
        "alarms.json" => parse_body::<Alarms>(name, JSON, b).map(drop),
        // Token answers belong to oauth.rs; error envelopes are checked below.
        "token_response.json" => Ok(()),
        error if error.starts_with("error_") => Ok(()),
        other => panic!("fixture {other} has no response type in tests/responses.rs"),
    }
}

#[test]
fn every_fixture_parses_into_its_type() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    assert!(names.len() >= 35, "fixtures missing: {names:?}");
    for name in &names {
        parse_any(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn systems_list_reads_pagination_and_quirks() {
    let page: SystemsPage = load("systems_list.json");
    assert_eq!((page.total, page.current_page, page.size, page.count), (Some(2), Some(1), Some(10), Some(2)));
    assert!(!page.has_more(), "1 * 10 >= 2");
    assert_eq!(page.systems.len(), 2);

    let a = &page.systems[0];
    assert_eq!(a.system_id, Some(4210001));
    assert_eq!(a.timezone.as_deref(), Some("America/Los_Angeles"));
    assert_eq!(a.interconnect_date.as_deref(), Some("2019-04-05"));
    assert_eq!(a.attachment_type.as_deref(), Some("rack_mount"));
    assert_eq!(a.address.as_ref().and_then(|ad| ad.postal_code.as_deref()), Some("95404"));
    assert_eq!((a.energy_lifetime, a.energy_today, a.system_size), (None, None, None), "deprecated -1");

    let b = &page.systems[1];
    assert_eq!(b.connection_type.as_deref(), Some("wifi"));
    assert_eq!(b.interconnect_date, None, "null interconnect_date");
    assert_eq!(b.attachment_type, None);
    assert!(b.other_references.is_empty() && b.reference.is_none());

    let mut more = load_value("systems_list.json");
    more["total"] = json!(25);
    assert!(parse_value::<SystemsPage>(&more).has_more());
}

#[test]
fn system_details_and_broken_system_fields() {
    let s: System = load("system_details.json");
    assert_eq!(s.name.as_deref(), Some("Maple Street Solar"));
    assert_eq!(s.operational_at, Some(1554447600));
    assert_eq!(s.system_size, None);

    let mut odd = load_value("system_details.json");
    odd["interconnect_date"] = json!(20190405);
    odd["address"] = json!("Santa Rosa, CA");
    odd["last_report_at"] = json!("1750101372");
    odd["reference"] = json!("INST-77");
    odd["other_references"] = json!(["A-1", 42]);
    let s: System = parse_value(&odd);
    assert_eq!(s.interconnect_date.as_deref(), Some("20190405"), "integer per schema, kept as text");
    assert!(s.address.is_none(), "unusable address dropped, not fatal");
    assert_eq!(s.last_report_at, Some(1750101372));
    assert_eq!(s.reference.as_deref(), Some("INST-77"));
    assert_eq!(s.other_references, ["A-1", "42"]);
    assert_eq!(s.name.as_deref(), Some("Maple Street Solar"));
}

#[test]
fn summary_fixtures_and_nmi() {
    let a: Summary = load("summary.json");
    assert_eq!(a.current_power, Some(4150));
    assert_eq!(a.energy_lifetime, Some(57318422));
    assert_eq!(a.nmi, None);
    assert_eq!(a.source.as_deref(), Some("microinverters"));
    assert!(a.evse_power.is_empty());

    let b: Summary = load("summary_with_battery.json");
    assert_eq!(b.nmi.as_deref(), Some("4103876521"), "nmi sent as a string");
    assert_eq!(
        (b.battery_charge_w, b.battery_discharge_w, b.battery_capacity_wh),
        (Some(3840), Some(3840), Some(5000))
    );
    assert_eq!(b.summary_date.as_deref(), Some("2025-06-17"));
}

#[test]
fn summary_quirks_do_not_fail_the_rest() {
    let s: Summary = load("summary_quirks.json");
    assert_eq!(s.modules, None, "\"modules\": \"many\" is dropped");
    assert_eq!(s.current_power, Some(640), "numeric string read");
    assert_eq!(s.nmi.as_deref(), Some("4103876521"), "nmi sent as a number");
    assert_eq!(s.operational_at, None);
    assert_eq!(s.size_w, Some(4680));
    assert_eq!(
        s.evse_power,
        vec![EvsePower {
            serial_number: "202412345678".into(),
            evse_max_charge_w: Some(7200),
            evse_min_charge_w: Some(1400),
        }]
    );

    let mut broken = load_value("summary_with_battery.json");
    broken["energy_today"] = json!({"value": "lots"});
    broken["status"] = json!(["normal"]);
    broken["evse_power"] = json!("none");
    let s: Summary = parse_value(&broken);
    assert_eq!((s.energy_today, s.status.as_deref()), (None, None));
    assert!(s.evse_power.is_empty());
    assert_eq!(s.energy_lifetime, Some(8412905));
}

#[test]
fn devices_by_type() {
    let d: Devices = load("devices.json");
    assert_eq!(d.total_devices, Some(17));
    let g = &d.devices;
    assert_eq!(g.micros.len(), 12);
    assert_eq!(g.micros[0].serial_number.as_deref(), Some("482241031052"));
    assert_eq!((g.micros[0].feoc_compliant, g.micros[0].dom_compliant), (Some(true), Some(false)));
    assert_eq!(g.meters.len(), 2);
    let consumption = g.meters.iter().find(|m| m.name.as_deref() == Some("consumption")).unwrap();
    assert_eq!(consumption.config_type.as_deref(), Some("Net"));
    assert_eq!(consumption.config_phase.as_deref(), Some("single"));
    assert_eq!(consumption.state.as_deref(), Some("enabled"));
    assert_eq!(consumption.sku, None, "null sku");
    assert_eq!(g.gateways[0].emu_sw_version.as_deref(), Some("D8.2.4345 (b3c6a2)"));
    assert!(g.gateways[0].cellular_modem.is_none());
    assert_eq!(g.encharges[0].model.as_deref(), Some(""));
    assert_eq!(g.enpowers.len(), 1);
    assert!(g.q_relays.is_empty() && g.acbs.is_empty() && g.ev_chargers.is_empty() && g.heat_pump.is_empty());
    assert!(g.iq_collars.is_empty() && g.iq_air.is_empty() && g.generators.is_empty());

    let mut more = load_value("devices.json");
    more["devices"]["micros"].as_array_mut().unwrap().push(json!("not a device"));
    more["devices"]["ev_chargers"] =
        json!([{"id": "", "name": "IQ EV Charger", "serial_number": "202412345678", "active": "true"}]);
    more["devices"]["gateways"][0]["cellular_modem"] =
        json!({"imei": 356938035643809_i64, "part_num": "800-00654-r02", "plan_end_date": "2030-01-31"});
    let d: Devices = parse_value(&more);
    assert_eq!(d.devices.micros.len(), 12, "the broken item is skipped");
    assert_eq!(d.devices.ev_chargers[0].id, None, "id \"\" is no id");
    assert_eq!(d.devices.ev_chargers[0].active, Some(true));
    let modem = d.devices.gateways[0].cellular_modem.as_ref().unwrap();
    assert_eq!(modem.imei.as_deref(), Some("356938035643809"));
    assert_eq!(modem.plan_end_date.as_deref(), Some("2030-01-31"));
}

#[test]
fn latest_telemetry_meters_and_batteries() {
    let t: LatestTelemetry = load("latest_telemetry.json");
    let meters = &t.devices.meters;
    assert_eq!(meters.len(), 6);
    assert_eq!(
        (meters[0].name.as_deref(), meters[0].channel, meters[0].power),
        (Some("production"), Some(1), Some(640))
    );
    assert_eq!((meters[1].last_report_at, meters[1].power), (None, None), "unused phase");
    assert_eq!(meters[3].power, Some(1520));
    let battery = &t.devices.encharges[0];
    assert_eq!(battery.operational_mode.as_deref(), Some("Discharging"));
    assert_eq!(battery.power, Some(160));
    assert!(t.devices.heat_pump.is_empty() && t.devices.evse.is_empty());

    let mut hp = load_value("latest_telemetry.json");
    hp["devices"]["heat-pump"] = json!([{"id": "", "name": "Heat pump", "channel": 1, "last_report_at": 1750111200, "power": 900, "operational_mode": "MODE_2"}]);
    hp["devices"]["evse"] = json!([{"id": 5, "power": null, "operational_mode": "PLUGGED_OUT"}]);
    let t: LatestTelemetry = parse_value(&hp);
    assert_eq!(t.devices.heat_pump[0].operational_mode.as_deref(), Some("MODE_2"));
    assert_eq!(t.devices.heat_pump[0].id, None);
    assert_eq!(t.devices.evse[0].operational_mode.as_deref(), Some("PLUGGED_OUT"));
}

#[test]
fn production_micro_and_empty_window() {
    let p: ProductionMicro = load("production_micro.json");
    assert_eq!(p.envelope.granularity.as_deref(), Some("15mins"));
    assert_eq!((p.envelope.start_at, p.envelope.end_at), (Some(1750100400), Some(1750101300)));
    assert_eq!(p.envelope.total_devices, Some(35));
    assert_eq!(p.intervals.len(), 3);
    assert_eq!(
        p.intervals[2],
        MicroInterval { end_at: Some(1750101300), devices_reporting: Some(34), powr: Some(4150), enwh: Some(346) }
    );
    assert_eq!(p.envelope.meta.as_ref().and_then(|m| m.last_energy_at), Some(1750101300));

    let empty: ProductionMicro = load("production_micro_empty.json");
    assert!(empty.intervals.is_empty());
    assert_eq!(empty.envelope.meta.and_then(|m| m.status).as_deref(), Some("normal"));
}

#[test]
fn meter_telemetry() {
    let p: ProductionMeter = load("production_meter.json");
    let wh: Vec<_> = p.intervals.iter().filter_map(|i| i.wh_del).collect();
    assert_eq!(wh, [12, 48, 96, 160]);
    assert!(p.envelope.meta.is_none(), "meta not sent on production_meter");

    let c: ConsumptionMeter = load("consumption_meter.json");
    assert_eq!(c.intervals.iter().filter_map(|i| i.enwh).sum::<i64>(), 310 + 295 + 420 + 380);
    assert_eq!(c.intervals[3].end_at, Some(1750111200));
}

#[test]
fn battery_telemetry_percent_string() {
    let b: BatteryTelemetry = load("battery_telemetry.json");
    assert_eq!(b.last_reported_aggregate_soc, Some(27), "\"27%\"");
    assert_eq!(b.intervals.len(), 4);
    let last = &b.intervals[3];
    assert_eq!(last.charge.as_ref().and_then(|c| c.enwh), Some(30));
    assert_eq!(last.discharge.as_ref().and_then(|d| d.enwh), Some(40));
    assert_eq!(last.soc.as_ref().and_then(|s| s.percent), Some(27));
    assert_eq!(last.soc.as_ref().and_then(|s| s.devices_reporting), Some(1));

    let mut odd = load_value("battery_telemetry.json");
    odd["last_reported_aggregate_soc"] = json!("unknown");
    odd["intervals"][0]["soc"] = json!("34%");
    let b: BatteryTelemetry = parse_value(&odd);
    assert_eq!(b.last_reported_aggregate_soc, None);
    assert_eq!(b.intervals[0].soc, None);
    assert_eq!(b.intervals[0].discharge.as_ref().and_then(|d| d.enwh), Some(180));
}

#[test]
fn import_export_telemetry_both_shapes_and_names() {
    let nested: ImportExportTelemetry = load("import_telemetry_nested.json");
    assert_eq!(nested.intervals.len(), 4, "[[…]] flattened");
    assert_eq!(nested.intervals[0], ImportExportInterval { end_at: Some(1750108500), wh: Some(298) });
    assert_eq!(nested.envelope.total_devices, Some(0));

    let schema_name: ImportExportTelemetry = load("import_telemetry_schema_name.json");
    assert_eq!(schema_name.intervals, vec![ImportExportInterval { end_at: Some(1750111200), wh: Some(220) }]);

    let export: ImportExportTelemetry = load("export_telemetry_flat.json");
    assert_eq!(export.intervals.len(), 4);
    assert!(export.intervals.iter().all(|i| i.wh == Some(0)));
    assert_eq!(export.envelope.start_date.as_deref(), Some("2025-06-17"));
    assert_eq!(export.envelope.start_at, None);

    let mut flat = load_value("import_telemetry_nested.json");
    flat["intervals"] = flat["intervals"][0].clone();
    let flat: ImportExportTelemetry = parse_value(&flat);
    assert_eq!(flat.intervals, nested.intervals, "[{{…}}] reads the same as [[{{…}}]]");
}

#[test]
fn energy_lifetime_pairs_days() {
    let e: EnergyLifetime = load("energy_lifetime.json");
    assert_eq!(e.meter_start_date.as_deref(), Some("2024-03-09"));
    let days = e.production_by_day();
    assert_eq!(days.len(), 7);
    assert_eq!(days[0], DailyWh { date: date("2025-06-10"), wh: 14210 });
    assert_eq!(days[6], DailyWh { date: date("2025-06-16"), wh: 11230 });
    assert_eq!(e.micro_production_by_day()[0].wh, 14508);
    assert_eq!(e.meter_production_by_day().len(), 7);
    assert_eq!(e.meta.and_then(|m| m.operational_at), Some(1709816400));

    let mut gap = load_value("energy_lifetime.json");
    gap["production"][1] = json!(null);
    let e: EnergyLifetime = parse_value(&gap);
    let days = e.production_by_day();
    assert_eq!(days.len(), 6);
    assert_eq!(days[1].date, date("2025-06-12"), "the later days keep their dates");

    let never: EnergyLifetime = parse_value(&json!({"system_id": 1, "start_date": null, "production": []}));
    assert!(never.production_by_day().is_empty());
}

#[test]
fn other_lifetime_series() {
    let c: ConsumptionLifetime = load("consumption_lifetime.json");
    assert_eq!(c.consumption_by_day()[0], DailyWh { date: date("2025-06-10"), wh: 18344 });
    let b: BatteryLifetime = load("battery_lifetime.json");
    assert_eq!(b.charge_by_day()[6], DailyWh { date: date("2025-06-16"), wh: 3050 });
    assert_eq!(b.discharge_by_day()[0].wh, 3806);
    let i: ImportLifetime = load("import_lifetime.json");
    assert_eq!(i.import_by_day().iter().map(|d| d.wh).sum::<i64>(), 62580);
    let x: ExportLifetime = load("export_lifetime.json");
    assert_eq!(x.export_by_day()[2], DailyWh { date: date("2025-06-12"), wh: 814 });
}

#[test]
fn meter_readings_accept_either_serial_key() {
    let p: ProductionMeterReadings = load("production_meter_readings.json");
    assert_eq!(
        p.meter_readings,
        vec![MeterReading {
            serial_number: Some("202403051877EIM1".into()),
            value: Some(8412905),
            read_at: Some(1750111200),
            ..Default::default()
        }]
    );
    let c: ConsumptionMeterReadings = load("consumption_meter_readings.json");
    assert_eq!(c.meter_readings[0].serial_number.as_deref(), Some("202403051877EIM2"), "from serial_num");
    assert_eq!(c.meter_readings[0].value, Some(9871342));
    let s: StorageMeterReadings = load("storage_meter_readings.json");
    let r = &s.meter_readings[0];
    assert_eq!(r.serial_number.as_deref(), Some("202403051877EIM4"));
    assert_eq!((r.value_charged, r.value_discharged, r.value), (Some(1374360), Some(1226890), None));
    assert_eq!(s.meta.and_then(|m| m.last_report_at), Some(1750111267));
}

#[test]
fn inverters_summary_power_both_shapes() {
    let s: InvertersSummary = load("inverters_summary.json");
    assert_eq!(s.0.len(), 1);
    assert_eq!(s.0[0].signal_strength, Some(5));
    let micros: Vec<_> = s.micro_inverters().collect();
    assert_eq!(micros.len(), 3);
    assert_eq!(micros[0].power_produced, Some(118), "object form");
    assert_eq!(micros[1].power_produced, Some(121), "bare number form");
    assert_eq!(micros[0].energy, Some(1687342));
    assert_eq!(micros[2].status.as_deref(), Some("micro"));
    assert_eq!(micros[2].last_report_date, Some(1749988800));

    let err =
        parse_body::<InvertersSummary>("/systems/inverters_summary_by_envoy_or_site", JSON, br#""no""#).unwrap_err();
    assert!(matches!(err, ApiError::Decode { .. }), "an unusable top level is Decode: {err:?}");
}

#[test]
fn device_level_telemetry() {
    let all: MicrosTelemetry = load("micros_telemetry.json");
    assert_eq!((all.page, all.size, all.envelope.total_devices), (Some(1), Some(10), Some(12)));
    assert!(all.has_more(), "1 * 10 < 12");
    assert_eq!(all.devices.len(), 2);
    assert_eq!(all.devices[1].serial_number.as_deref(), Some("482241031053"));
    assert_eq!(all.devices[0].intervals.iter().filter_map(|i| i.enwh).sum::<i64>(), 13);

    // The other shapes the lenient reading takes: a map of serial to intervals (or to an object
    // holding them) under `micros`, and junk where the list should be.
    let map: MicrosTelemetry = serde_json::from_str(
        r#"{"system_id": 1, "total_devices": "2", "page": 1, "size": 20, "devices": null,
            "micros": {"A1": [{"end_at": 300, "enwh": 4}], "B2": {"intervals": [{"end_at": "300", "powr": 50}]}}}"#,
    )
    .unwrap();
    assert_eq!(map.envelope.total_devices, Some(2));
    assert_eq!(map.devices.len(), 2);
    assert_eq!((map.devices[0].serial_number.as_deref(), map.devices[0].intervals[0].enwh), (Some("A1"), Some(4)));
    assert_eq!(map.devices[1].intervals[0].powr, Some(50));
    let junk: MicrosTelemetry = serde_json::from_str(r#"{"devices": "none", "micros": 7, "page": 2}"#).unwrap();
    assert!(junk.devices.is_empty() && !junk.has_more());

    let one: MicroTelemetry = load("micro_telemetry.json");
    assert_eq!(one.serial_number.as_deref(), Some("482241031052"));
    assert_eq!(one.intervals[1].powr, Some(55));
    assert_eq!(one.envelope.total_devices, Some(1));

    let battery: EnchargeTelemetry = load("encharge_telemetry.json");
    assert_eq!(battery.last_reported_soc, Some(27));
    assert_eq!(battery.last_reported_time, Some(1750111200));
    assert_eq!(battery.intervals[0].charge.as_ref().and_then(|c| c.enwh), Some(30));
    assert_eq!(battery.intervals[0].charge.as_ref().and_then(|c| c.devices_reporting), None);
}

#[test]
fn events_and_alarms() {
    let e: Events = load("events.json");
    assert_eq!(e.events.len(), 2);
    assert!(e.events[0].is_open(), "\"open\"");
    assert!(!e.events[1].is_open(), "\"Closed\"");
    assert_eq!(e.events[0].event_end_time, None);
    assert_eq!(e.events[1].event_type_id, Some(611));

    let a: Alarms = load("alarms.json");
    let alarm = &a.alarms[0];
    assert_eq!(alarm.id.as_deref(), Some("88120001"));
    assert_eq!((alarm.cleared, alarm.severity), (Some(false), Some(2)));
    assert_eq!(alarm.events[0].serial_number.as_deref(), Some("482241031057"));
    assert_eq!(alarm.events[0].end_date, None);
    assert_eq!(alarm.alarm_start_time, Some(1750090500));
}

#[test]
fn error_fixtures_map_to_variants() {
    let cases: [(&str, u16, &str); 9] = [
        ("error_401.json", 401, "unauthorized"),
        ("error_403.json", 403, "forbidden"),
        ("error_404.json", 404, "not_found"),
        ("error_405.json", 405, "server"),
        ("error_422.json", 422, "invalid_request"),
        ("error_429.json", 429, "rate_limited"),
        ("error_429_month.json", 429, "rate_limited"),
        ("error_500.json", 500, "server"),
        ("error_500_alt.json", 500, "server"),
    ];
    for (name, status, kind) in cases {
        let err = ApiError::from_response(status, JSON, &bytes(name));
        assert_eq!(err.kind(), kind, "{name}: {err:?}");
        assert!(!err.to_string().contains('\n'), "{name}: one line");
    }
    let month = ApiError::from_response(429, JSON, &bytes("error_429_month.json"));
    assert!(matches!(month, ApiError::RateLimited { period: Some(RatePeriod::Month), .. }));
}

#[test]
fn html_with_200_is_not_json() {
    let html = b"<html><body>This website is under heavy load (queue full)</body></html>";
    let err = parse_body::<Summary>("/systems/{id}/summary", Some("text/html"), html).unwrap_err();
    assert!(matches!(&err, ApiError::NotJson { status: 200, content_type } if content_type == "text/html"));
    assert!(err.is_transient());
}
