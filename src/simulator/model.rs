//! The simulated fleet: each system's hardware and its physics as pure functions of time.
//!
//! Every energy figure is an integer number of Wh and is built so that the views agree exactly:
//! a day's closed-form total equals the sum of its 5-minute micro buckets, which equals the sum
//! of its 15-minute meter buckets; lifetime registers are a base plus the sum of daily totals.
//! Day totals are cheap closed forms (no time-zone work), so lifetime sums over hundreds of days
//! stay cheap for a thousand systems; bucket-level days are computed on demand and memoized.
//!
//! Data becomes visible only when the gateway uploads (every 15 minutes, or every 6 hours on a
//! cellular modem, at a per-system phase), so new intervals appear in steps as in the real cloud.

use std::collections::HashMap;
use std::f64::consts::PI;
use std::ops::{Add, Sub};
use std::sync::{Arc, Mutex};

use chrono::{Datelike, Days, NaiveDate, NaiveTime, Weekday};

use super::places::{ATTACHMENTS, FIRMWARE, NAME_ENDINGS, NAME_STEMS, PLACES, Place, Region};
use super::rng::{hash, salt, unit};
use crate::zone::Zone;

/// `system_id` of the first simulated system; the others follow one by one.
pub const FIRST_SYSTEM_ID: u64 = 4_210_001;
/// Length of a microinverter interval, seconds.
pub const MICRO_STEP: i64 = 300;
/// Length of a meter, battery or import/export interval, seconds.
pub const METER_STEP: i64 = 900;
/// Upload period of a gateway on Ethernet or Wi-Fi, seconds.
pub const UPLOAD_PERIOD_SECS: i64 = 900;
/// Upload period of a gateway on a cellular modem, seconds.
pub const CELLULAR_UPLOAD_PERIOD_SECS: i64 = 21_600;
/// Usable capacity of the one IQ Battery 5P on battery systems, Wh.
pub const BATTERY_CAPACITY_WH: i64 = 5_000;
/// Maximum charge and discharge rate of that battery, W.
pub const BATTERY_MAX_W: i64 = 3_840;

/// How many bucket-level days each system keeps in memory.
const PROFILE_CACHE_DAYS: usize = 16;
/// Upper bound on the prefix-sum table (days since the operational date): about 270 years.
const MAX_PREFIX_DAYS: i64 = 100_000;
/// How far back [`SimSystem::last_producing_end`] looks for a producing interval, days.
const PRODUCING_LOOKBACK_DAYS: usize = 8;

/// What a system has besides microinverters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SystemKind {
    /// Microinverters only: no meters, production from the micros (`source: microinverters`).
    MicroOnly,
    /// Production CT and a Net consumption CT (`source: meter`).
    Metered,
    /// Metered, plus one IQ Battery 5P and an IQ System Controller.
    Battery,
}

/// How the gateway reaches the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    /// Wired Ethernet, uploads every 15 minutes.
    Ethernet,
    /// Wi-Fi, uploads every 15 minutes.
    Wifi,
    /// Cellular modem in low-bandwidth mode, uploads every 6 hours.
    Cellular,
}

impl Connection {
    /// The `connection_type` string of the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Connection::Ethernet => "ethernet",
            Connection::Wifi => "wifi",
            Connection::Cellular => "cellular",
        }
    }
}

/// One microinverter.
#[derive(Debug, Clone)]
pub struct Micro {
    /// Device id.
    pub id: u64,
    /// 12-digit serial number.
    pub serial: String,
    /// Fraction of the site's production this micro makes (all shares add up to 1).
    share: f64,
}

/// The gateway (IQ Gateway / Envoy).
#[derive(Debug, Clone)]
pub struct Gateway {
    /// Device id.
    pub id: u64,
    /// 12-digit serial number.
    pub serial: String,
    /// `emu_sw_version`.
    pub firmware: &'static str,
    /// `signal_strength` in the inverters summary (0–5).
    pub signal_strength: i64,
    /// IMEI of the cellular modem, when there is one.
    pub imei: Option<String>,
}

/// The production and consumption CTs of a metered system.
#[derive(Debug, Clone)]
pub struct Meters {
    /// Device id of the production meter.
    pub production_id: u64,
    /// Device id of the (Net) consumption meter.
    pub consumption_id: u64,
}

/// The battery and system controller of a battery system.
#[derive(Debug, Clone)]
pub struct Battery {
    /// Device id of the IQ Battery.
    pub id: u64,
    /// Serial number of the IQ Battery.
    pub serial: String,
    /// Device id of the IQ System Controller.
    pub enpower_id: u64,
    /// Serial number of the IQ System Controller.
    pub enpower_serial: String,
}

/// A micro that stopped reporting: the system's status is `micro` from then on.
#[derive(Debug, Clone, Copy)]
pub struct DeadMicro {
    /// Index into [`SimSystem::micros`].
    pub index: usize,
    /// Local date from which it produces nothing.
    pub date: NaiveDate,
    /// Local midnight of `date`, epoch seconds.
    pub at: i64,
}

/// House-load parameters, W.
#[derive(Debug, Clone, Copy)]
struct LoadSpec {
    base_w: f64,
    morning_w: f64,
    evening_w: f64,
}

/// Energy sums, Wh. Used both for one day and for running totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Solar production.
    pub production: i64,
    /// House consumption (zero without a consumption meter).
    pub consumption: i64,
    /// Energy into the battery.
    pub charge: i64,
    /// Energy out of the battery.
    pub discharge: i64,
}

impl Add for Totals {
    type Output = Totals;
    fn add(self, o: Totals) -> Totals {
        Totals {
            production: self.production + o.production,
            consumption: self.consumption + o.consumption,
            charge: self.charge + o.charge,
            discharge: self.discharge + o.discharge,
        }
    }
}

impl Sub for Totals {
    type Output = Totals;
    fn sub(self, o: Totals) -> Totals {
        Totals {
            production: self.production - o.production,
            consumption: self.consumption - o.consumption,
            charge: self.charge - o.charge,
            discharge: self.discharge - o.discharge,
        }
    }
}

/// One 5-minute microinverter interval, summed over the site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroBucket {
    /// End of the interval, epoch seconds.
    pub end: i64,
    /// Energy produced, Wh.
    pub enwh: i64,
    /// Average power, W.
    pub powr: i64,
    /// Micros that reported in the interval.
    pub reporting: i64,
}

/// One 15-minute meter interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterBucket {
    /// End of the interval, epoch seconds.
    pub end: i64,
    /// Production, Wh (sum of the three micro buckets).
    pub production: i64,
    /// House consumption, Wh.
    pub consumption: i64,
    /// Energy into the battery, Wh.
    pub charge: i64,
    /// Energy out of the battery, Wh.
    pub discharge: i64,
    /// Battery state of charge at the end of the interval, %.
    pub soc: i64,
}

impl MeterBucket {
    /// Grid energy, Wh: positive when importing.
    pub fn grid(&self) -> i64 {
        self.consumption - self.production + self.charge - self.discharge
    }

    /// Energy imported from the grid, Wh.
    pub fn import(&self) -> i64 {
        self.grid().max(0)
    }

    /// Energy exported to the grid, Wh.
    pub fn export(&self) -> i64 {
        (-self.grid()).max(0)
    }
}

/// Bucket-level data of one local day.
#[derive(Debug)]
struct DayProfile {
    /// Local midnight, epoch seconds.
    start: i64,
    /// Next local midnight, epoch seconds (23, 24 or 25 hours later).
    end: i64,
    /// Production per 5-minute bucket, Wh.
    prod5: Vec<i64>,
    /// Average power per 5-minute bucket, W.
    powr5: Vec<i64>,
    /// Micros reporting per 5-minute bucket.
    rep5: Vec<i64>,
    /// Consumption per 15-minute bucket, Wh (empty without meters).
    load15: Vec<i64>,
    /// Stored battery energy at each 15-minute boundary, Wh (`n15 + 1` values, empty without battery).
    stored15: Vec<i64>,
    /// State of charge at each 15-minute boundary, % (as `stored15`).
    soc15: Vec<i64>,
}

impl DayProfile {
    fn n15(&self) -> usize {
        self.prod5.len() / 3
    }

    fn prod15(&self, k: usize) -> i64 {
        self.prod5[3 * k..3 * k + 3].iter().sum()
    }

    fn charge15(&self, k: usize) -> (i64, i64) {
        match (self.stored15.get(k), self.stored15.get(k + 1)) {
            (Some(a), Some(b)) => ((b - a).max(0), (a - b).max(0)),
            _ => (0, 0),
        }
    }

    fn meter_bucket(&self, k: usize) -> MeterBucket {
        let (charge, discharge) = self.charge15(k);
        MeterBucket {
            end: self.start + METER_STEP * (k as i64 + 1),
            production: self.prod15(k),
            consumption: self.load15.get(k).copied().unwrap_or(0),
            charge,
            discharge,
            soc: self.soc15.get(k + 1).copied().unwrap_or(0),
        }
    }

    fn micro_bucket(&self, b: usize) -> MicroBucket {
        MicroBucket {
            end: self.start + MICRO_STEP * (b as i64 + 1),
            enwh: self.prod5[b],
            powr: self.powr5[b],
            reporting: self.rep5[b],
        }
    }

    /// Sums of the buckets that end at or before `t`, counting whole `step`-long buckets only.
    fn partial(&self, t: i64, step: i64) -> Totals {
        let span = (t - self.start).clamp(0, self.end - self.start);
        let cutoff = span / step * step;
        let n5 = ((cutoff / MICRO_STEP) as usize).min(self.prod5.len());
        let n15 = ((cutoff / METER_STEP) as usize).min(self.n15());
        let mut totals = Totals {
            production: self.prod5[..n5].iter().sum(),
            consumption: self.load15.iter().take(n15).sum(),
            ..Totals::default()
        };
        for k in 0..n15 {
            let (c, d) = self.charge15(k);
            totals.charge += c;
            totals.discharge += d;
        }
        totals
    }
}

/// Memoized data of one system.
#[derive(Debug, Default)]
struct Cache {
    /// Recently used bucket-level days, keyed by day number, with a last-use tick.
    days: HashMap<i32, (u64, Arc<DayProfile>)>,
    tick: u64,
    /// `prefix[k]` = sum of the day totals of the `k` days starting at the operational date.
    prefix: Vec<Totals>,
}

/// One simulated Enphase system.
#[derive(Debug)]
pub struct SimSystem {
    index: usize,
    seed: u64,
    system_id: u64,
    name: String,
    place: &'static Place,
    zone: Zone,
    lat: f64,
    lon: f64,
    kind: SystemKind,
    connection: Connection,
    micros: Vec<Micro>,
    size_w: i64,
    op_date: NaiveDate,
    op_at: i64,
    interconnect: bool,
    attachment_type: Option<&'static str>,
    lifetime_base_wh: i64,
    meter_base_wh: i64,
    upload_period: i64,
    upload_phase: i64,
    load: LoadSpec,
    gateway: Gateway,
    meters: Option<Meters>,
    battery: Option<Battery>,
    dead: Option<DeadMicro>,
    cache: Mutex<Cache>,
}

/// The simulated fleet: systems `4210001`, `4210002`, … in order.
#[derive(Debug)]
pub struct Fleet {
    systems: Vec<SimSystem>,
}

impl Fleet {
    /// Builds `count` systems from `seed`; `start` (epoch seconds) anchors the operational dates.
    pub fn generate(count: usize, seed: u64, start: i64) -> Self {
        let systems = (0..count).map(|i| SimSystem::generate(seed, i, start)).collect();
        Fleet { systems }
    }

    /// Number of systems.
    pub fn len(&self) -> usize {
        self.systems.len()
    }

    /// Whether the fleet has no systems.
    pub fn is_empty(&self) -> bool {
        self.systems.is_empty()
    }

    /// All systems, ordered by `system_id`.
    pub fn systems(&self) -> &[SimSystem] {
        &self.systems
    }

    /// The system with this `system_id`.
    pub fn get(&self, system_id: u64) -> Option<&SimSystem> {
        let index = system_id.checked_sub(FIRST_SYSTEM_ID)?;
        self.systems.get(usize::try_from(index).ok()?)
    }

    /// The system whose gateway has this serial number.
    pub fn by_gateway_serial(&self, serial: &str) -> Option<&SimSystem> {
        self.systems.iter().find(|s| s.gateway.serial == serial)
    }
}

/// What a system reports right now, for benchmarks that compare a client's output to the truth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemSnapshot {
    /// `system_id`.
    pub system_id: u64,
    /// Last gateway upload, epoch seconds.
    pub last_report_at: i64,
    /// End of the last visible interval with production, epoch seconds.
    pub last_interval_end_at: Option<i64>,
    /// Power of the last visible interval (the summary's `current_power`), W.
    pub current_power_w: i64,
    /// Visible production of the current local day, Wh.
    pub energy_today_wh: i64,
    /// Lifetime production up to the end of yesterday (local), Wh.
    pub energy_lifetime_wh: i64,
    /// The house's load in the last visible meter interval, W (metered systems only); on a battery
    /// site not what `latest_telemetry` calls consumption (see `latest_telemetry_body`).
    pub consumption_power_w: Option<i64>,
    /// Battery state of charge at the last visible boundary, % (battery systems only).
    pub battery_soc_percent: Option<i64>,
    /// Battery power of the last visible interval, W, positive when discharging.
    pub battery_power_w: Option<i64>,
}

impl SimSystem {
    fn generate(seed: u64, index: usize, start: i64) -> Self {
        let i = index as u64;
        let h = |s: u64| hash(&[seed, i, s]);
        let place = &PLACES[index % PLACES.len()];
        let lap = index / PLACES.len();
        // Later laps around the place list move a little so that the fleet is not a set of clones.
        let (lat, lon) = if lap == 0 {
            (place.lat, place.lon)
        } else {
            let u = unit(h(salt::LOCATION));
            let v = unit(hash(&[seed, i, salt::LOCATION, 1]));
            (place.lat + (u - 0.5) * 3.0, place.lon + (v - 0.5) * 3.0)
        };
        let kind = match index % 3 {
            0 => SystemKind::MicroOnly,
            1 => SystemKind::Metered,
            _ => SystemKind::Battery,
        };
        let connection = if index % 4 == 3 {
            Connection::Cellular
        } else if kind == SystemKind::MicroOnly {
            Connection::Ethernet
        } else {
            Connection::Wifi
        };

        let micro_count = 10 + (h(salt::MICROS) % 26) as usize;
        let panel_choices = [300_i64, 320, 340, 360, 380, 400];
        let panel_w = panel_choices[(h(salt::PANEL) % panel_choices.len() as u64) as usize]
            .min(12_000 / micro_count as i64 / 5 * 5);
        let size_w = panel_w * micro_count as i64;

        let zone = Zone::named(place.tz).unwrap_or_else(Zone::utc);
        let start_date = zone.local_date(start);
        let age_days = 100 + h(salt::AGE) % 801;
        let op_date = start_date.checked_sub_days(Days::new(age_days)).unwrap_or(start_date);
        let op_at = zone.midnight(op_date);
        let interconnect = h(salt::INTERCONNECT) % 3 != 0;
        let attachment_type =
            interconnect.then(|| ATTACHMENTS[(h(salt::ATTACHMENT) % ATTACHMENTS.len() as u64) as usize]);

        let (upload_period, upload_phase) = if connection == Connection::Cellular {
            (CELLULAR_UPLOAD_PERIOD_SECS, (h(salt::PHASE) % CELLULAR_UPLOAD_PERIOD_SECS as u64) as i64)
        } else {
            // 20–270 s after each 15-minute boundary: each upload carries the bucket just ended.
            (UPLOAD_PERIOD_SECS, 20 + (h(salt::PHASE) % 250) as i64)
        };

        let id_base = 1_000_000_000 + i * 1_000;
        let op_year = op_date.year();
        let serial_suffix = 10_000_000 + i * 37 + h(salt::SERIAL) % 37;
        let gateway_serial = format!("{op_year}{serial_suffix:08}");
        let micros = {
            let weights: Vec<f64> =
                (0..micro_count).map(|j| 0.9 + 0.2 * unit(hash(&[seed, i, salt::SHARE, j as u64]))).collect();
            let total: f64 = weights.iter().sum();
            weights
                .iter()
                .enumerate()
                .map(|(j, w)| Micro {
                    id: id_base + 100 + j as u64,
                    serial: format!("48{:02}{:08}", op_year % 100, 10_000_000 + i * 40 + j as u64),
                    share: w / total,
                })
                .collect()
        };
        let gateway = Gateway {
            id: id_base + 200,
            serial: gateway_serial,
            firmware: FIRMWARE[(h(salt::FIRMWARE) % FIRMWARE.len() as u64) as usize],
            signal_strength: 2 + (h(salt::SIGNAL) % 4) as i64,
            imei: (connection == Connection::Cellular)
                .then(|| format!("35{:013}", h(salt::SERIAL) % 10_000_000_000_000)),
        };
        let meters = (kind != SystemKind::MicroOnly)
            .then_some(Meters { production_id: id_base + 201, consumption_id: id_base + 202 });
        let battery = (kind == SystemKind::Battery).then(|| Battery {
            id: id_base + 301,
            serial: format!("4824{:08}", 15_000_000 + i),
            enpower_id: id_base + 401,
            enpower_serial: format!("4824{:08}", 16_000_000 + i),
        });
        let dead = (index % 7 == 4)
            .then(|| start_date.checked_sub_days(Days::new(2)))
            .flatten()
            .map(|date| DeadMicro { index: micro_count - 1, date, at: zone.midnight(date) });

        let stem = NAME_STEMS[index % NAME_STEMS.len()];
        let ending = NAME_ENDINGS[(h(salt::NAME) % NAME_ENDINGS.len() as u64) as usize];
        let name = if index < NAME_STEMS.len() {
            format!("{stem} {ending}")
        } else {
            format!("{stem} {ending} {}", index + 1)
        };
        let l = |k: u64| unit(hash(&[seed, i, salt::LOAD, k]));
        let load = LoadSpec {
            base_w: 150.0 + 300.0 * l(0),
            morning_w: 600.0 + 900.0 * l(1),
            evening_w: 800.0 + 1_400.0 * l(2),
        };

        SimSystem {
            index,
            seed,
            system_id: FIRST_SYSTEM_ID + i,
            name,
            place,
            zone,
            lat,
            lon,
            kind,
            connection,
            micros,
            size_w,
            op_date,
            op_at,
            interconnect,
            attachment_type,
            lifetime_base_wh: 1_000_000 + (h(salt::BASE) % 4_000_000) as i64,
            meter_base_wh: (hash(&[seed, i, salt::BASE, 1]) % 50_000) as i64,
            upload_period,
            upload_phase,
            load,
            gateway,
            meters,
            battery,
            dead,
            cache: Mutex::new(Cache::default()),
        }
    }

    // ----- identity and hardware -------------------------------------------------------------

    /// `system_id`.
    pub fn system_id(&self) -> u64 {
        self.system_id
    }

    /// Position in the fleet (0-based).
    pub fn index(&self) -> usize {
        self.index
    }

    /// `name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the system stands.
    pub fn place(&self) -> &'static Place {
        self.place
    }

    /// IANA time-zone name.
    pub fn timezone(&self) -> &'static str {
        self.place.tz
    }

    /// Hardware kind.
    pub fn kind(&self) -> SystemKind {
        self.kind
    }

    /// Gateway connection.
    pub fn connection(&self) -> Connection {
        self.connection
    }

    /// Whether the gateway uploads only every 6 hours.
    pub fn is_cellular(&self) -> bool {
        self.connection == Connection::Cellular
    }

    /// Whether the system has production and consumption meters.
    pub fn has_meters(&self) -> bool {
        self.meters.is_some()
    }

    /// Whether the system has a battery.
    pub fn has_battery(&self) -> bool {
        self.battery.is_some()
    }

    /// DC size, W.
    pub fn size_w(&self) -> i64 {
        self.size_w
    }

    /// The microinverters.
    pub fn micros(&self) -> &[Micro] {
        &self.micros
    }

    /// The gateway.
    pub fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    /// The meters, if any.
    pub fn meters(&self) -> Option<&Meters> {
        self.meters.as_ref()
    }

    /// The battery, if any.
    pub fn battery(&self) -> Option<&Battery> {
        self.battery.as_ref()
    }

    /// The micro that stopped reporting, if any.
    pub fn dead_micro(&self) -> Option<&DeadMicro> {
        self.dead.as_ref()
    }

    /// Operational (interconnection) date, local.
    pub fn operational_date(&self) -> NaiveDate {
        self.op_date
    }

    /// Local midnight of the operational date, epoch seconds (`operational_at`).
    pub fn operational_at(&self) -> i64 {
        self.op_at
    }

    /// `interconnect_date`: the operational date, or `None` for systems that never set it.
    pub fn interconnect_date(&self) -> Option<NaiveDate> {
        self.interconnect.then_some(self.op_date)
    }

    /// `attachment_type`.
    pub fn attachment_type(&self) -> Option<&'static str> {
        self.attachment_type
    }

    /// First day the meter's figures replace the micros' in `energy_lifetime` (metered systems).
    pub fn meter_start_date(&self) -> Option<NaiveDate> {
        self.meters.as_ref().and(self.op_date.succ_opt())
    }

    /// `source` of the summary.
    pub fn source(&self) -> &'static str {
        if self.has_meters() { "meter" } else { "microinverters" }
    }

    /// Interval length of the figures the summary is built from.
    pub fn source_step(&self) -> i64 {
        if self.has_meters() { METER_STEP } else { MICRO_STEP }
    }

    /// System `status` at `now`.
    pub fn status(&self, now: i64) -> &'static str {
        match self.dead {
            Some(dead) if now >= dead.at => "micro",
            _ => "normal",
        }
    }

    /// `nmi` (Australian systems only).
    pub fn nmi(&self) -> Option<String> {
        (self.place.region == Region::Au)
            .then(|| format!("41{:08}", hash(&[self.seed, self.index as u64, salt::SERIAL, 9]) % 100_000_000))
    }

    /// Number of metering phases (`config_phase` single = 1, split = 2, three = 3).
    pub fn phases(&self) -> usize {
        match self.place.region {
            Region::Us => 2,
            Region::Eu => 3,
            Region::Au | Region::Nz => 1,
        }
    }

    /// `config_phase` of the meters.
    pub fn config_phase(&self) -> &'static str {
        match self.phases() {
            2 => "split",
            3 => "three",
            _ => "single",
        }
    }

    // ----- time --------------------------------------------------------------------------------

    /// Local date at epoch second `t`.
    pub fn local_date(&self, t: i64) -> NaiveDate {
        self.zone.local_date(t)
    }

    /// Epoch second of local midnight at the start of `date`.
    pub fn midnight(&self, date: NaiveDate) -> i64 {
        self.zone.midnight(date)
    }

    /// Local midnight at the end of `date`.
    pub fn day_end(&self, date: NaiveDate) -> i64 {
        match date.succ_opt() {
            Some(next) => self.midnight(next),
            None => self.midnight(date) + 86_400,
        }
    }

    /// Time of the last gateway upload at or before `now`.
    pub fn last_upload_at(&self, now: i64) -> i64 {
        let p = self.upload_period;
        (now - self.upload_phase).div_euclid(p) * p + self.upload_phase
    }

    /// End of the first interval of this `step` (`first_interval` in 422 details).
    pub fn first_interval(&self, step: i64) -> i64 {
        self.op_at + step
    }

    /// End of the last visible interval of this `step`, never before the first one.
    pub fn last_interval(&self, now: i64, step: i64) -> i64 {
        let visible = self.last_upload_at(now);
        (visible.div_euclid(step) * step).max(self.first_interval(step))
    }

    // ----- physics: closed-form day totals ----------------------------------------------------

    fn weather(&self, date: NaiveDate) -> f64 {
        let u = unit(hash(&[self.seed, self.index as u64, salt::WEATHER, day_number(date) as u64]));
        1.0 - 0.8 * u.powf(1.6)
    }

    /// Fraction of the micros still producing on `date`.
    fn alive_fraction(&self, date: NaiveDate) -> f64 {
        match self.dead {
            Some(dead) if date >= dead.date => {
                let n = self.micros.len() as f64;
                (n - 1.0) / n
            }
            _ => 1.0,
        }
    }

    fn sun(&self, date: NaiveDate) -> Sun {
        let n = f64::from(date.ordinal());
        let decl = 23.44_f64.to_radians() * (2.0 * PI * (284.0 + n) / 365.0).sin();
        let phi = self.lat.to_radians();
        let cos_w = (-(phi.tan() * decl.tan())).clamp(-1.0, 1.0);
        let daylen = cos_w.acos() / PI * 86_400.0;
        let elevation = PI / 2.0 - (phi - decl).abs();
        let noon = date.and_time(NaiveTime::MIN).and_utc().timestamp() as f64 + 43_200.0 - self.lon * 240.0;
        Sun { sunrise: noon - daylen / 2.0, daylen, elevation_factor: elevation.sin().max(0.05) }
    }

    /// Full-day production, Wh: what the day adds to the lifetime once it is completely uploaded.
    pub fn day_production_wh(&self, date: NaiveDate) -> i64 {
        if date < self.op_date {
            return 0;
        }
        let sun = self.sun(date);
        if sun.daylen < 3_600.0 {
            return 0;
        }
        let peak = self.size_w as f64 * 0.82 * sun.elevation_factor * self.weather(date) * self.alive_fraction(date);
        // The production curve is sin² over the daylight hours, whose integral is half the
        // peak times the day length.
        (peak * sun.daylen / 3_600.0 * 0.5).round() as i64
    }

    /// Full-day house consumption, Wh (zero without a consumption meter).
    pub fn day_consumption_wh(&self, date: NaiveDate) -> i64 {
        if self.meters.is_none() || date < self.op_date {
            return 0;
        }
        let u = unit(hash(&[self.seed, self.index as u64, salt::LOAD_DAY, day_number(date) as u64]));
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let factor = (0.85 + 0.35 * u) * if weekend { 1.1 } else { 1.0 };
        let sqrt_pi = PI.sqrt();
        let average =
            self.load.base_w + self.load.morning_w * sqrt_pi * 1.0 / 24.0 + self.load.evening_w * sqrt_pi * 1.5 / 24.0;
        (average * factor * 24.0).round() as i64
    }

    fn soc_mid(&self, date: NaiveDate) -> f64 {
        35.0 + 25.0 * unit(hash(&[self.seed, self.index as u64, salt::SOC_MID, day_number(date) as u64]))
    }

    fn soc_min(&self, date: NaiveDate) -> f64 {
        10.0 + 15.0 * unit(hash(&[self.seed, self.index as u64, salt::SOC_MIN, day_number(date) as u64]))
    }

    fn soc_max(&self, date: NaiveDate) -> f64 {
        (62.0 + 38.0 * self.weather(date)).min(100.0)
    }

    /// Battery key points of a day: quarter-hour index of the low (about sunrise) and of the
    /// high (15:00). SOC falls from midnight to the low, rises to the high, falls to midnight.
    fn soc_keys(&self, date: NaiveDate) -> (usize, usize) {
        let daylen_h = self.sun(date).daylen / 3_600.0;
        let low = ((12.5 - daylen_h / 2.0) * 4.0).round().clamp(8.0, 40.0) as usize;
        (low, 60)
    }

    /// Full-day battery charge and discharge, Wh. SOC is monotone between the key points, so the
    /// per-bucket differences telescope to these closed forms.
    pub fn day_battery_wh(&self, date: NaiveDate) -> (i64, i64) {
        if self.battery.is_none() || date < self.op_date {
            return (0, 0);
        }
        let next = date.succ_opt().unwrap_or(date);
        let mid = stored_wh(self.soc_mid(date));
        let low = stored_wh(self.soc_min(date));
        let high = stored_wh(self.soc_max(date));
        let mid_next = stored_wh(self.soc_mid(next));
        (high - low, (mid - low) + (high - mid_next))
    }

    /// All closed-form totals of one day.
    pub fn day_totals(&self, date: NaiveDate) -> Totals {
        let (charge, discharge) = self.day_battery_wh(date);
        Totals {
            production: self.day_production_wh(date),
            consumption: self.day_consumption_wh(date),
            charge,
            discharge,
        }
    }

    // ----- physics: bucket-level days ---------------------------------------------------------

    fn compute_profile(&self, date: NaiveDate) -> DayProfile {
        let start = self.midnight(date);
        let end = self.day_end(date).max(start + METER_STEP);
        let n5 = ((end - start) / METER_STEP * 3) as usize;
        let n15 = n5 / 3;
        let i = self.index as u64;

        // Production: distribute the closed-form total over sin²-shaped, cloud-jittered weights
        // by cumulative rounding, so the buckets add up to the total exactly.
        let total = self.day_production_wh(date);
        let sun = self.sun(date);
        let weather = self.weather(date);
        let weights: Vec<f64> = (0..n5)
            .map(|b| {
                let mid = (start + MICRO_STEP * b as i64 + MICRO_STEP / 2) as f64;
                let x = (mid - sun.sunrise) / sun.daylen;
                if x <= 0.0 || x >= 1.0 {
                    return 0.0;
                }
                let cloud = unit(hash(&[self.seed, i, salt::CLOUD, mid as u64]));
                (PI * x).sin().powi(2) * (1.0 - 0.6 * (1.0 - weather) * cloud)
            })
            .collect();
        let prod5 = distribute(total, &weights, noon_bucket(start, n5, &sun));
        let alive = self.micros.len() as i64 - i64::from(self.dead.is_some_and(|dead| date >= dead.date));
        let powr5 = prod5
            .iter()
            .enumerate()
            .map(|(b, &wh)| {
                if wh == 0 {
                    0
                } else {
                    wh * 12 + (hash(&[self.seed, i, salt::POWR, (start + b as i64) as u64]) % 12) as i64
                }
            })
            .collect();
        let rep5 = prod5
            .iter()
            .enumerate()
            .map(|(b, &wh)| {
                if wh == 0 {
                    0
                } else {
                    // Now and then one micro misses a bucket, as in the fixtures.
                    let missed = hash(&[self.seed, i, salt::REPORTING, (start + b as i64) as u64]).is_multiple_of(40);
                    (alive - i64::from(missed)).max(1)
                }
            })
            .collect();

        let load15 = if self.meters.is_some() {
            let weights: Vec<f64> = (0..n15)
                .map(|k| {
                    let hour = (METER_STEP * k as i64 + METER_STEP / 2) as f64 / 3_600.0;
                    let shape = self.load.base_w
                        + self.load.morning_w * (-((hour - 7.5) / 1.0).powi(2)).exp()
                        + self.load.evening_w * (-((hour - 19.0) / 1.5).powi(2)).exp();
                    let jitter = unit(hash(&[self.seed, i, salt::LOAD_JITTER, (start + k as i64) as u64]));
                    shape * (0.7 + 0.6 * jitter)
                })
                .collect();
            distribute(self.day_consumption_wh(date), &weights, n15 / 2)
        } else {
            Vec::new()
        };

        let (soc15, stored15) = if self.battery.is_some() && date >= self.op_date {
            let next = date.succ_opt().unwrap_or(date);
            let (mid, low, high, mid_next) =
                (self.soc_mid(date), self.soc_min(date), self.soc_max(date), self.soc_mid(next));
            let (r, p) = self.soc_keys(date);
            let socs: Vec<f64> = (0..=n15)
                .map(|k| {
                    // Key points are set exactly so that stored energy telescopes to the totals.
                    if k == 0 {
                        mid
                    } else if k == r {
                        low
                    } else if k == p {
                        high
                    } else if k == n15 {
                        mid_next
                    } else if k < r {
                        mid + (low - mid) * smoothstep(k as f64 / r as f64)
                    } else if k < p {
                        low + (high - low) * smoothstep((k - r) as f64 / (p - r) as f64)
                    } else {
                        high + (mid_next - high) * smoothstep((k - p) as f64 / (n15 - p) as f64)
                    }
                })
                .collect();
            (socs.iter().map(|s| s.round() as i64).collect(), socs.iter().map(|&s| stored_wh(s)).collect())
        } else {
            (Vec::new(), Vec::new())
        };

        DayProfile { start, end: start + n5 as i64 * MICRO_STEP, prod5, powr5, rep5, load15, stored15, soc15 }
    }

    fn profile(&self, date: NaiveDate) -> Arc<DayProfile> {
        let key = day_number(date);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.tick += 1;
        let tick = cache.tick;
        if let Some(entry) = cache.days.get_mut(&key) {
            entry.0 = tick;
            return Arc::clone(&entry.1);
        }
        let profile = Arc::new(self.compute_profile(date));
        if cache.days.len() >= PROFILE_CACHE_DAYS
            && let Some(oldest) = cache.days.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| *k)
        {
            cache.days.remove(&oldest);
        }
        cache.days.insert(key, (tick, Arc::clone(&profile)));
        profile
    }

    /// Sum of the day totals from the operational date up to (not including) `date`.
    fn prefix(&self, date: NaiveDate) -> Totals {
        let k = (date - self.op_date).num_days().clamp(0, MAX_PREFIX_DAYS) as usize;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.prefix.is_empty() {
            cache.prefix.push(Totals::default());
        }
        while cache.prefix.len() <= k {
            let day = cache.prefix.len() as u64 - 1;
            let Some(d) = self.op_date.checked_add_days(Days::new(day)) else {
                break;
            };
            let last = cache.prefix[cache.prefix.len() - 1];
            cache.prefix.push(last + self.day_totals(d));
        }
        cache.prefix.get(k).copied().unwrap_or_else(|| cache.prefix[cache.prefix.len() - 1])
    }

    /// Energy since the operational date in whole `step` buckets ending at or before `t`
    /// (production excludes the lifetime base).
    pub fn cumulative_at(&self, t: i64, step: i64) -> Totals {
        if t <= self.op_at {
            return Totals::default();
        }
        let date = self.local_date(t);
        self.prefix(date) + self.profile(date).partial(t, step)
    }

    /// Lifetime production counter (base included) in whole `step` buckets ending at or before `t`.
    pub fn production_through(&self, t: i64, step: i64) -> i64 {
        self.lifetime_base_wh + self.cumulative_at(t, step).production
    }

    /// What a day shows once the uploads up to `visible` are in: the full totals, a partial
    /// sum, or zeros for a day not reported yet.
    pub fn day_visible(&self, date: NaiveDate, visible: i64, step: i64) -> Totals {
        if date < self.op_date {
            return Totals::default();
        }
        let start = self.midnight(date);
        if visible <= start {
            Totals::default()
        } else if visible >= self.day_end(date) {
            self.day_totals(date)
        } else {
            self.profile(date).partial(visible, step)
        }
    }

    /// Energy imported and exported on `date` as far as it is visible at `visible`, Wh.
    pub fn day_import_export(&self, date: NaiveDate, visible: i64) -> (i64, i64) {
        if self.meters.is_none() {
            return (0, 0);
        }
        let start = self.midnight(date);
        let until = visible.min(self.day_end(date));
        self.meter_buckets(start, until).iter().fold((0, 0), |(i, e), b| (i + b.import(), e + b.export()))
    }

    /// Days whose buckets may end in `(after, until]`, capped to a little over a week.
    fn days_between(&self, after: i64, until: i64) -> Vec<NaiveDate> {
        if until <= after {
            return Vec::new();
        }
        let first = self.local_date(after).max(self.op_date);
        let last = self.local_date(until - 1);
        let mut days = Vec::new();
        let mut d = first;
        while d <= last && days.len() < 9 {
            days.push(d);
            match d.succ_opt() {
                Some(next) => d = next,
                None => break,
            }
        }
        days
    }

    /// Site micro intervals whose end lies in `(after, until]` (after the operational time).
    pub fn micro_buckets(&self, after: i64, until: i64) -> Vec<MicroBucket> {
        let after = after.max(self.op_at);
        let mut out = Vec::new();
        for date in self.days_between(after, until) {
            let profile = self.profile(date);
            out.extend(
                (0..profile.prod5.len()).map(|b| profile.micro_bucket(b)).filter(|b| b.end > after && b.end <= until),
            );
        }
        out
    }

    /// Meter intervals (production, consumption, battery) whose end lies in `(after, until]`.
    pub fn meter_buckets(&self, after: i64, until: i64) -> Vec<MeterBucket> {
        let after = after.max(self.op_at);
        let mut out = Vec::new();
        for date in self.days_between(after, until) {
            let profile = self.profile(date);
            out.extend((0..profile.n15()).map(|k| profile.meter_bucket(k)).filter(|b| b.end > after && b.end <= until));
        }
        out
    }

    /// The last visible `step` bucket (ending at or before the last upload), if any.
    pub fn last_meter_bucket(&self, now: i64) -> Option<MeterBucket> {
        let end = self.last_upload_at(now).div_euclid(METER_STEP) * METER_STEP;
        self.meter_buckets(end - METER_STEP, end).pop()
    }

    /// The last visible micro bucket, if any.
    pub fn last_micro_bucket(&self, now: i64) -> Option<MicroBucket> {
        let end = self.last_upload_at(now).div_euclid(MICRO_STEP) * MICRO_STEP;
        self.micro_buckets(end - MICRO_STEP, end).pop()
    }

    /// End of the last interval (of this `step`) with production that ends at or before
    /// `visible`, looking back a little over a week.
    pub fn last_producing_end(&self, visible: i64, step: i64) -> Option<i64> {
        let mut date = self.local_date(visible);
        for _ in 0..PRODUCING_LOOKBACK_DAYS {
            if date < self.op_date {
                return None;
            }
            let profile = self.profile(date);
            let cutoff = visible.min(profile.end);
            if step == METER_STEP {
                let n = (((cutoff - profile.start).max(0)) / METER_STEP) as usize;
                if let Some(k) = (0..n.min(profile.n15())).rev().find(|&k| profile.prod15(k) > 0) {
                    return Some(profile.start + METER_STEP * (k as i64 + 1));
                }
            } else {
                let n = (((cutoff - profile.start).max(0)) / MICRO_STEP) as usize;
                if let Some(b) = (0..n.min(profile.prod5.len())).rev().find(|&b| profile.prod5[b] > 0) {
                    return Some(profile.start + MICRO_STEP * (b as i64 + 1));
                }
            }
            date = date.pred_opt()?;
        }
        None
    }

    /// Power of the last visible interval of the summary's source, W.
    pub fn current_power(&self, now: i64) -> i64 {
        if self.has_meters() {
            self.last_meter_bucket(now).map_or(0, |b| b.production * 4)
        } else {
            self.last_micro_bucket(now).map_or(0, |b| b.powr)
        }
    }

    /// `(energy_today, energy_lifetime)` of the summary for `date`, as visible at `now`:
    /// the lifetime runs to the start of `date`, today's energy from there on.
    pub fn summary_energy(&self, now: i64, date: NaiveDate) -> (i64, i64) {
        let visible = self.last_upload_at(now);
        let step = self.source_step();
        let start = self.midnight(date);
        let end = self.day_end(date);
        let lifetime = self.production_through(visible.min(start), step);
        let today = self.production_through(visible.min(end), step) - lifetime;
        (today.max(0), lifetime)
    }

    // ----- micros --------------------------------------------------------------------------

    /// Share of the site's production made by micro `j` at time `t` (the dead micro's share is
    /// taken over by the others after it stops).
    pub fn micro_share_at(&self, j: usize, t: i64) -> f64 {
        let Some(micro) = self.micros.get(j) else {
            return 0.0;
        };
        match self.dead {
            Some(dead) if t > dead.at => {
                if j == dead.index {
                    0.0
                } else {
                    micro.share / (1.0 - self.micros[dead.index].share)
                }
            }
            _ => micro.share,
        }
    }

    /// Lifetime energy of micro `j` as visible at `now`, Wh. The micros add up to the site.
    pub fn micro_lifetime_wh(&self, j: usize, now: i64) -> i64 {
        let Some(micro) = self.micros.get(j) else {
            return 0;
        };
        let visible = self.last_upload_at(now);
        let total = self.production_through(visible, MICRO_STEP) as f64;
        match self.dead {
            Some(dead) if visible > dead.at => {
                let at_death = self.production_through(dead.at, MICRO_STEP) as f64;
                if j == dead.index {
                    (micro.share * at_death).round() as i64
                } else {
                    let later = micro.share / (1.0 - self.micros[dead.index].share);
                    (micro.share * at_death + later * (total - at_death)).round() as i64
                }
            }
            _ => (micro.share * total).round() as i64,
        }
    }

    /// Last power of micro `j` (from the last visible micro interval), W.
    pub fn micro_power_w(&self, j: usize, now: i64) -> i64 {
        self.last_micro_bucket(now).map_or(0, |b| (b.powr as f64 * self.micro_share_at(j, b.end)).round() as i64)
    }

    /// When micro `j` last reported: a little before the end of the last producing interval.
    pub fn micro_last_report(&self, j: usize, now: i64) -> Option<i64> {
        let visible = self.last_upload_at(now);
        let visible = match self.dead {
            Some(dead) if j == dead.index => visible.min(dead.at),
            _ => visible,
        };
        let end = self.last_producing_end(visible, MICRO_STEP)?;
        Some(end - 60 + (j as i64 * 7) % 55)
    }

    // ----- meters and battery --------------------------------------------------------------

    /// Time of the last visible meter boundary (meters report every 15 minutes, day and night).
    pub fn meter_last_report(&self, now: i64) -> Option<i64> {
        self.has_meters().then(|| self.last_interval(now, METER_STEP))
    }

    /// Cumulative meter registers at `t` (whole 15-minute buckets), Wh.
    pub fn registers(&self, t: i64) -> Registers {
        let totals = self.cumulative_at(t, METER_STEP);
        Registers {
            production: self.meter_base_wh + totals.production,
            consumption: 2 * self.meter_base_wh + totals.consumption,
            charged: totals.charge,
            discharged: totals.discharge,
        }
    }

    /// Past gateway outages overlapping `[from, to]` that were over by `now`: on about one
    /// local day in five the gateway misses 15 to 90 minutes of reports. (The uploads
    /// themselves are not interrupted; the event is for the events endpoint only.)
    pub fn closed_events(&self, from: i64, to: i64, now: i64) -> Vec<ClosedEvent> {
        let mut events = Vec::new();
        if to < from {
            return events;
        }
        let mut date = self.local_date(from).pred_opt().unwrap_or(self.op_date).max(self.op_date);
        let last = self.local_date(to);
        while date <= last && events.len() < 16 {
            let h = hash(&[self.seed, self.index as u64, salt::EVENT, day_number(date) as u64]);
            if h.is_multiple_of(5) {
                let start = self.midnight(date) + 3_600 * (1 + (h >> 8) as i64 % 20) + 900 * ((h >> 16) as i64 % 4);
                let end = start + 900 * (1 + (h >> 24) as i64 % 6);
                if start <= to && end >= from && end <= now {
                    events.push(ClosedEvent { start, end });
                }
            }
            match date.succ_opt() {
                Some(next) => date = next,
                None => break,
            }
        }
        events
    }

    /// Snapshot of what the API shows at `now`.
    pub fn snapshot(&self, now: i64) -> SystemSnapshot {
        let visible = self.last_upload_at(now);
        let today = self.local_date(now);
        let (energy_today_wh, energy_lifetime_wh) = self.summary_energy(now, today);
        let last = self.last_meter_bucket(now);
        SystemSnapshot {
            system_id: self.system_id,
            last_report_at: visible,
            last_interval_end_at: self.last_producing_end(visible, self.source_step()),
            current_power_w: self.current_power(now),
            energy_today_wh,
            energy_lifetime_wh,
            consumption_power_w: self.has_meters().then(|| last.map_or(0, |b| b.consumption * 4)),
            battery_soc_percent: self.has_battery().then(|| self.battery_soc(now)),
            battery_power_w: self.has_battery().then(|| last.map_or(0, |b| (b.discharge - b.charge) * 4)),
        }
    }

    /// Battery SOC at the last visible 15-minute boundary, %.
    pub fn battery_soc(&self, now: i64) -> i64 {
        if self.battery.is_none() {
            return 0;
        }
        let end = self.last_interval(now, METER_STEP);
        let date = self.local_date(end - 1);
        let profile = self.profile(date);
        let k = ((end - profile.start) / METER_STEP).max(0) as usize;
        profile.soc15.get(k).or(profile.soc15.last()).copied().unwrap_or(0)
    }
}

/// A short gateway outage that has already ended (a `Closed` event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosedEvent {
    /// When the gateway stopped reporting, epoch seconds.
    pub start: i64,
    /// When it reported again, epoch seconds.
    pub end: i64,
}

/// Cumulative meter readings, Wh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registers {
    /// Production meter.
    pub production: i64,
    /// Consumption meter.
    pub consumption: i64,
    /// Energy ever charged into the battery.
    pub charged: i64,
    /// Energy ever discharged from the battery.
    pub discharged: i64,
}

/// Sunrise and day length of one date at one place.
struct Sun {
    sunrise: f64,
    daylen: f64,
    elevation_factor: f64,
}

fn smoothstep(x: f64) -> f64 {
    let x = x.clamp(0.0, 1.0);
    x * x * (3.0 - 2.0 * x)
}

fn stored_wh(soc: f64) -> i64 {
    (BATTERY_CAPACITY_WH as f64 * soc / 100.0).round() as i64
}

/// Bucket nearest to solar noon: the fallback home of a total whose weights are all zero.
fn noon_bucket(start: i64, n5: usize, sun: &Sun) -> usize {
    let noon = sun.sunrise + sun.daylen / 2.0;
    (((noon - start as f64) / MICRO_STEP as f64).max(0.0) as usize).min(n5.saturating_sub(1))
}

/// Splits `total` over buckets in proportion to `weights` by cumulative rounding: every share
/// is non-negative and the shares add up to `total` exactly.
fn distribute(total: i64, weights: &[f64], fallback: usize) -> Vec<i64> {
    let mut out = vec![0; weights.len()];
    if out.is_empty() || total == 0 {
        return out;
    }
    let sum: f64 = weights.iter().sum();
    if sum <= 0.0 || !sum.is_finite() {
        let at = fallback.min(out.len() - 1);
        out[at] = total;
        return out;
    }
    let mut acc = 0.0;
    let mut prev = 0;
    let mut last_weighted = 0;
    for (b, w) in weights.iter().enumerate() {
        acc += w;
        let cum = ((total as f64) * (acc / sum)).round() as i64;
        out[b] = cum - prev;
        prev = cum;
        if *w > 0.0 {
            last_weighted = b;
        }
    }
    out[last_weighted] += total - prev;
    out
}

/// Day number used as a cache and hash key.
fn day_number(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2025-06-16 12:00 UTC.
    const START: i64 = 1_750_075_200;

    fn fleet(n: usize) -> Fleet {
        Fleet::generate(n, 1, START)
    }

    #[test]
    fn fleet_kinds_ids_and_sizes() {
        let fleet = fleet(24);
        assert_eq!(fleet.len(), 24);
        let s = fleet.get(4_210_001).expect("first system");
        assert_eq!(s.kind(), SystemKind::MicroOnly);
        assert_eq!(s.timezone(), "America/Los_Angeles");
        assert_eq!(s.connection().as_str(), "ethernet");
        assert_eq!(fleet.get(4_210_002).map(SimSystem::kind), Some(SystemKind::Metered));
        assert_eq!(fleet.get(4_210_003).map(SimSystem::kind), Some(SystemKind::Battery));
        assert!(fleet.get(4_210_004).is_some_and(SimSystem::is_cellular));
        assert!(fleet.get(4_210_000).is_none() && fleet.get(4_210_025).is_none());
        for s in fleet.systems() {
            assert!((3_000..=12_000).contains(&s.size_w()), "{} W", s.size_w());
            assert!((10..=35).contains(&s.micros().len()));
            let age = (s.local_date(START) - s.operational_date()).num_days();
            assert!((100..=900).contains(&age), "age {age}");
            assert_eq!(s.operational_at() % 900, 0);
        }
        let serials: std::collections::HashSet<_> =
            fleet.systems().iter().flat_map(|s| s.micros().iter().map(|m| m.serial.clone())).collect();
        assert_eq!(serials.len(), fleet.systems().iter().map(|s| s.micros().len()).sum::<usize>());
    }

    #[test]
    fn same_seed_same_fleet_other_seed_other_fleet() {
        let a = Fleet::generate(6, 7, START);
        let b = Fleet::generate(6, 7, START);
        let c = Fleet::generate(6, 8, START);
        let day = |f: &Fleet| f.systems().iter().map(|s| s.day_production_wh(s.local_date(START))).collect::<Vec<_>>();
        assert_eq!(day(&a), day(&b));
        assert_ne!(day(&a), day(&c));
        assert_eq!(a.systems()[1].snapshot(START + 5_000), b.systems()[1].snapshot(START + 5_000));
    }

    #[test]
    fn intervals_sum_to_daily_totals() {
        let fleet = fleet(14);
        for s in fleet.systems() {
            let mut date = s.local_date(START - 5 * 86_400);
            for _ in 0..10 {
                let (from, to) = (s.midnight(date), s.day_end(date));
                let micro: i64 = s.micro_buckets(from, to).iter().map(|b| b.enwh).sum();
                let meter = s.meter_buckets(from, to);
                let totals = s.day_totals(date);
                assert_eq!(micro, totals.production, "{} {date}", s.system_id());
                assert_eq!(meter.iter().map(|b| b.production).sum::<i64>(), totals.production);
                assert_eq!(meter.iter().map(|b| b.consumption).sum::<i64>(), totals.consumption);
                assert_eq!(meter.iter().map(|b| b.charge).sum::<i64>(), totals.charge);
                assert_eq!(meter.iter().map(|b| b.discharge).sum::<i64>(), totals.discharge);
                // Each 15-minute production bucket is the sum of its three 5-minute buckets.
                let micro_buckets = s.micro_buckets(from, to);
                for (k, m) in meter.iter().enumerate() {
                    let three: i64 = micro_buckets[3 * k..3 * k + 3].iter().map(|b| b.enwh).sum();
                    assert_eq!(m.production, three);
                    assert_eq!(m.end, micro_buckets[3 * k + 2].end);
                }
                // Grid balance holds per bucket.
                for m in &meter {
                    assert_eq!(m.import() - m.export(), m.consumption - m.production + m.charge - m.discharge);
                }
                if s.has_meters() {
                    assert!(totals.consumption > 0);
                }
                date = date.succ_opt().expect("date");
            }
        }
    }

    #[test]
    fn production_is_zero_at_local_night_and_positive_at_noon() {
        let fleet = fleet(13);
        for s in fleet.systems() {
            let date = s.local_date(START);
            let midnight = s.midnight(date);
            let night: i64 = s.micro_buckets(midnight, midnight + 3 * 3_600).iter().map(|b| b.enwh).sum();
            let late: i64 = s.micro_buckets(midnight + 23 * 3_600, midnight + 24 * 3_600).iter().map(|b| b.enwh).sum();
            assert_eq!(night + late, 0, "{} produces at night", s.timezone());
            let noon: Vec<_> = s.micro_buckets(midnight + 11 * 3_600, midnight + 14 * 3_600);
            assert!(noon.iter().all(|b| b.enwh > 0 && b.reporting > 0), "{}", s.timezone());
            for b in &noon {
                assert!((b.powr * 5 / 60 - b.enwh).abs() <= 1, "enwh ≈ powr*5/60: {b:?}");
                assert!(b.powr <= s.size_w() * 2, "power {} above size {}", b.powr, s.size_w());
            }
        }
    }

    #[test]
    fn lifetime_never_decreases_and_today_resets_at_local_midnight() {
        let fleet = fleet(6);
        for s in fleet.systems() {
            let date = s.local_date(START);
            let midnight = s.midnight(date.succ_opt().expect("date"));
            let mut last_total = 0;
            let mut last_lifetime = 0;
            let mut t = midnight - 2 * 86_400;
            while t < midnight + 86_400 {
                let snap = s.snapshot(t);
                let total = snap.energy_lifetime_wh + snap.energy_today_wh;
                assert!(total >= last_total, "lifetime+today fell at {t}");
                assert!(snap.energy_lifetime_wh >= last_lifetime, "lifetime fell at {t}");
                last_total = total;
                last_lifetime = snap.energy_lifetime_wh;
                t += 599;
            }
            if !s.is_cellular() {
                // Shortly after local midnight the day's energy is back to zero.
                let after = s.snapshot(midnight + 600);
                assert_eq!(after.energy_today_wh, 0);
                let before = s.snapshot(midnight - 1);
                assert_eq!(after.energy_lifetime_wh, before.energy_lifetime_wh + before.energy_today_wh);
            }
        }
    }

    #[test]
    fn lifetime_is_base_plus_daily_totals() {
        let fleet = fleet(3);
        let s = &fleet.systems()[0];
        let today = s.local_date(START);
        let mut sum = s.production_through(s.operational_at(), MICRO_STEP);
        let mut d = s.operational_date();
        while d < today {
            sum += s.day_production_wh(d);
            d = d.succ_opt().expect("date");
        }
        let (_, lifetime) = s.summary_energy(START, today);
        assert_eq!(lifetime, sum);
        assert!(lifetime > 1_000_000);
    }

    #[test]
    fn data_appears_in_upload_steps() {
        let fleet = fleet(4);
        for s in fleet.systems() {
            let date = s.local_date(START);
            let noon = s.midnight(date) + 12 * 3_600;
            let period = if s.is_cellular() { CELLULAR_UPLOAD_PERIOD_SECS } else { UPLOAD_PERIOD_SECS };
            let upload = s.last_upload_at(noon);
            assert!(upload <= noon && noon - upload < period);
            // Nothing changes between two uploads...
            let before = s.snapshot(upload + period - 1);
            assert_eq!(before, s.snapshot(upload));
            // ...and the next upload brings new data.
            let after = s.snapshot(upload + period);
            assert_eq!(after.last_report_at, upload + period);
            assert!(after.energy_today_wh > before.energy_today_wh || s.is_cellular());
            assert!(s.last_interval(noon, METER_STEP) <= upload);
        }
    }

    #[test]
    fn battery_soc_stays_in_range_and_visible_sums_are_consistent() {
        let fleet = fleet(6);
        let s = &fleet.systems()[2];
        assert!(s.has_battery());
        let date = s.local_date(START);
        let buckets = s.meter_buckets(s.midnight(date), s.day_end(date));
        assert!(buckets.iter().all(|b| (10..=100).contains(&b.soc)));
        assert!(buckets.iter().all(|b| b.charge * 4 <= BATTERY_MAX_W && b.discharge * 4 <= BATTERY_MAX_W));
        let low = buckets.iter().map(|b| b.soc).min().unwrap_or(0);
        let high = buckets.iter().map(|b| b.soc).max().unwrap_or(0);
        assert!(high - low >= 20, "battery barely moves: {low}..{high}");
        // A partially visible day equals the sum of its visible buckets.
        let visible = s.midnight(date) + 13 * 3_600 + 7;
        let part = s.day_visible(date, visible, METER_STEP);
        let summed: i64 = s.meter_buckets(s.midnight(date), visible).iter().map(|b| b.charge).sum();
        assert_eq!(part.charge, summed);
    }

    #[test]
    fn micros_add_up_to_the_site() {
        let fleet = fleet(12);
        for s in [&fleet.systems()[0], &fleet.systems()[4]] {
            let now = START + 3_600;
            let sum: i64 = (0..s.micros().len()).map(|j| s.micro_lifetime_wh(j, now)).sum();
            let site = s.production_through(s.last_upload_at(now), MICRO_STEP);
            assert!((sum - site).abs() <= s.micros().len() as i64, "{sum} vs {site}");
        }
        let broken = &fleet.systems()[4];
        assert_eq!(broken.status(START), "micro");
        let dead = broken.dead_micro().expect("dead micro");
        assert_eq!(broken.micro_share_at(dead.index, START), 0.0);
    }

    #[test]
    fn closed_events_are_short_past_and_occasional() {
        let fleet = fleet(2);
        let s = &fleet.systems()[1];
        let events = s.closed_events(START - 60 * 86_400, START, START);
        assert!((3..=16).contains(&events.len()), "{} events in 60 days", events.len());
        for e in &events {
            assert!(e.end <= START && (900..=5_400).contains(&(e.end - e.start)), "{e:?}");
        }
        assert!(s.closed_events(START, START - 1, START).is_empty());
    }

    #[test]
    fn distribute_is_exact() {
        assert_eq!(distribute(10, &[1.0, 1.0, 1.0], 0).iter().sum::<i64>(), 10);
        assert_eq!(distribute(7, &[0.0, 0.0], 1), vec![0, 7]);
        assert_eq!(distribute(0, &[1.0], 0), vec![0]);
        assert!(distribute(1_000, &[0.1, 5.0, 0.0, 2.0], 0).iter().all(|&x| x >= 0));
    }
}
