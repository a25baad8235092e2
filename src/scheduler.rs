//! When to call which endpoint for which system: pure, with the clock passed in, so that a whole
//! month simulates in milliseconds.
//!
//! The free Watt plan allows 1,000 hits a month for the whole application, about one every 45
//! minutes if spent evenly. Spending them evenly wastes half at night and most of the rest on
//! data that has not changed: the gateway uploads every 15 minutes (cellular ones every 6 hours),
//! so a poll between two uploads finds nothing new. This scheduler therefore
//! - learns each system's upload cadence and phase from the `last_report_at` values it sees, and
//!   polls just after an upload can have arrived, never before;
//! - learns each system's daylight window (in its own time zone) from its production, and does
//!   little at night: the day's totals, interval back-fill and per-inverter data come once after
//!   sunset;
//! - spreads the month's remaining hits over the month's remaining daylight, after a reserve for
//!   token refreshes and the Refresh button, and recomputes that on every decision, so it corrects
//!   itself after a restart, a refresh or an outage.
//!
//! It never decides to send past a limit: every decision waits for the ledger's next free slot,
//! and nothing is planned once the month's spendable hits are gone.

use std::collections::{BTreeMap, VecDeque};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::zone::Zone;

/// A minute in milliseconds.
const MINUTE: i64 = 60_000;
/// How long a hit counts against the per-minute limit (the ledger's window).
const WINDOW: i64 = crate::enlighten::ledger::WINDOW_MS;
/// An hour in milliseconds.
const HOUR: i64 = 60 * MINUTE;
/// A day in milliseconds.
const DAY: i64 = 24 * HOUR;
/// Hits kept back per remaining day, for the daily token refresh.
pub const RESERVE_PER_DAY: u32 = 1;
/// Hits kept back for the month, for the Refresh button.
pub const RESERVE_PER_MONTH: u32 = 10;
/// How long after an expected upload to poll at first; learned per system from then on (the
/// cloud needs a moment to process an upload).
const UPLOAD_LAG: i64 = 60_000;
/// The learned lag stays within these bounds.
const LAG_RANGE: (i64, i64) = (15_000, 10 * 60_000);
/// Without interval back-fill, the intervals are still read every this many days, to learn the
/// daylight window from.
const LEARN_EVERY_DAYS: i64 = 3;
/// A metered site whose share is too tight for the evening totals still reads them every this
/// many days: the grid, consumption and battery totals are never missing, only less current.
/// The inverter data, too tight for a nightly read, comes as often.
const TOTALS_EVERY_DAYS: i64 = 7;
/// Margin added before the learned daylight window: the day's first read goes to the last upload
/// before the production starts, so that the night's value is not on show once it does.
const DAWN_MARGIN: i64 = 20 * MINUTE;
/// Margin added after it. Small: a read after the production has ended shows nothing the day's
/// last read did not, and the window is already the widest of a week.
const DUSK_MARGIN: i64 = 5 * MINUTE;
/// The evening's interval back-fill comes this long after the daylight window, when it is not
/// made by the day's last power read.
const BACKFILL_AFTER_DUSK: i64 = 30 * MINUTE;

/// What a call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Task {
    /// Current power: `summary` on micro-only sites (it carries energy too); on metered and
    /// battery sites `latest_telemetry`, with `summary` every third time for the energy totals.
    Power,
    /// A battery's state of charge (`telemetry/battery`): a read of its own, so that no power
    /// read is spent on it, and at night too, when the battery runs the house.
    Soc,
    /// The day's totals of a metered site after sunset: `summary`, meter registers, lifetimes.
    Energy,
    /// New 5- and 15-minute intervals since the last seen (also teaches the daylight window).
    /// The micros' series among them shows the newest production power as well (its newest
    /// bucket), so the day's last power read takes the evening back-fill with it.
    Intervals,
    /// Per-microinverter data.
    Inverters,
}

impl Task {
    /// Every task, highest priority first.
    pub const ALL: [Task; 5] = [Task::Power, Task::Soc, Task::Energy, Task::Intervals, Task::Inverters];
}

/// What the scheduler learned of one system, and when it last read the intervals and the totals:
/// kept across restarts (in `totals.json`), so that a restart does not spend hits on reads that
/// are not due (each interval read and totals read costs one to five hits a system).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// When it was taken, epoch ms: older than `MEMORY_LIFE` it is not used.
    pub at_ms: i64,
    /// The newest upload seen, and the gaps between the recent ones (epoch seconds).
    upload_last: Option<i64>,
    upload_gaps: Vec<i64>,
    usual_refuted: bool,
    lag_ms: i64,
    /// Local date (`YYYY-MM-DD`) → first and last second of the day with production.
    daylight: Vec<(String, i64, i64)>,
    /// Whether those seconds are of standard time (see `Daylight`); memories kept before they
    /// were hold wall-clock seconds, taken back less the day's daylight-saving shift.
    #[serde(default)]
    daylight_standard: bool,
    /// When the intervals and the totals were last read, epoch ms.
    intervals_ms: Option<i64>,
    energy_ms: Option<i64>,
}

/// How long a kept [`Memory`] is trusted: the daylight window drifts, and a bridge stopped for
/// longer should read its intervals and totals afresh anyway.
const MEMORY_LIFE: i64 = 3 * DAY;

/// What the scheduler needs to know of a system.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteProfile {
    /// The system.
    pub system_id: u64,
    /// IANA time zone (Enphase's `timezone`); UTC when unknown.
    pub timezone: Option<String>,
    /// Production or consumption meters fitted.
    pub metered: bool,
    /// Batteries fitted.
    pub battery: bool,
    /// The gateway uploads over a cellular modem (about every 6 hours).
    pub cellular: bool,
    /// Pages of device-level micro telemetry read with the inverter data (20 micros a page;
    /// 0 when the plan has no device-level access).
    pub micro_pages: u32,
}

impl SiteProfile {
    /// Hits one call for `task` costs on this site.
    pub fn cost(&self, task: Task) -> u32 {
        match task {
            Task::Power | Task::Soc => 1,
            Task::Energy => 1 + 3 * u32::from(self.metered) + u32::from(self.battery),
            Task::Intervals => 1 + u32::from(self.metered) + u32::from(self.battery),
            Task::Inverters => 1 + self.micro_pages,
        }
    }
}

/// The budget as the ledger sees it now.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// Hits left this month (the plan's or the configured cap, minus what was used).
    pub month_left: u32,
    /// Earliest instant a hit may be sent (now, or later, after a 429 or at the month's limit).
    pub next_free_ms: i64,
    /// When the current UTC month ends.
    pub month_end_ms: i64,
    /// The per-minute limit in force.
    pub minute_limit: u32,
    /// When each hit of the last 60 seconds was sent, oldest first.
    pub recent_ms: Vec<i64>,
}

impl Budget {
    /// The earliest instant at or after `from` when `cost` hits fit in every 60-second window
    /// (counted as the ledger does, with its margin for latency).
    pub fn fits_at(&self, from: i64, cost: u32) -> i64 {
        let room = self.minute_limit.saturating_sub(cost) as usize;
        let in_window: Vec<i64> = self.recent_ms.iter().copied().filter(|t| *t > from - WINDOW).collect();
        if in_window.len() <= room {
            return from;
        }
        // Wait until all but `room` of them have left the window.
        in_window[in_window.len() - room - 1] + WINDOW
    }
}

/// The next call to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// When to make it.
    pub at_ms: i64,
    /// For which system.
    pub system_id: u64,
    /// What for.
    pub task: Task,
    /// Whether the call is a power read: `Task::Power`, or the interval read made in place of
    /// the day's last one (it shows the newest power too), which keeps to the same floor.
    pub power: bool,
}

impl Decision {
    /// A power read of `system_id` at `at_ms`, outside the plan (start-up, the Refresh button).
    pub fn power_read(at_ms: i64, system_id: u64) -> Self {
        Self { at_ms, system_id, task: Task::Power, power: true }
    }
}

/// What a call found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    /// Whether the call succeeded.
    pub ok: bool,
    /// The gateway's last upload according to the answer.
    pub last_report_at: Option<i64>,
    /// Production power in the answer, W.
    pub production_w: Option<i64>,
    /// Production intervals in the answer: `(end_at, Wh)`.
    pub intervals: Vec<(i64, i64)>,
    /// The call was made as a power read (`Decision::power`): besides `Task::Power`, the
    /// interval read made in place of the day's last one.
    pub power: bool,
}

/// Learns the upload cadence and phase from the distinct `last_report_at` values seen.
#[derive(Debug, Clone)]
struct Uploads {
    /// The newest upload seen, epoch seconds.
    last: Option<i64>,
    /// Gaps between distinct uploads seen (multiples of the cadence when polls skip uploads).
    gaps: VecDeque<i64>,
    /// The connection's usual cadence: 15 minutes, 6 hours on a cellular modem.
    default_secs: i64,
    /// Power reads in a row that found no new upload.
    missed: u32,
    /// Whether reads timed by the usual cadence found nothing twice running: the gateway
    /// uploads more rarely than its connection type says.
    usual_refuted: bool,
}

impl Uploads {
    fn new(cellular: bool) -> Self {
        Self {
            last: None,
            gaps: VecDeque::new(),
            default_secs: if cellular { 6 * 3600 } else { 900 },
            missed: 0,
            usual_refuted: false,
        }
    }

    /// A power read found no new upload (`false`) or one (`true`).
    fn read(&mut self, fresh: bool) {
        self.missed = if fresh { 0 } else { self.missed + 1 };
        if self.missed >= 2 {
            self.usual_refuted = true;
        }
    }

    fn observe(&mut self, at: i64) -> bool {
        match self.last {
            Some(last) if at <= last => false,
            Some(last) => {
                self.gaps.push_back(at - last);
                if self.gaps.len() > 24 {
                    self.gaps.pop_front();
                }
                self.last = Some(at);
                true
            }
            None => {
                self.last = Some(at);
                true
            }
        }
    }

    /// The cadence in seconds: the greatest common divisor of the recent gaps, rounded to a
    /// minute (gaps are multiples of it when polls skip uploads), within 5 min … 12 h.
    ///
    /// Reads spaced by whole cadences see only gaps that are multiples of their spacing, so the
    /// divisor can settle on a multiple of the true cadence (reads every 2 hours, 15-minute
    /// uploads), and the spacing, rounded to it, then keeps it there. A divisor that is a multiple
    /// of the connection's usual cadence is taken for that usual cadence, unless reads timed by it
    /// found nothing twice running.
    fn cadence_secs(&self) -> i64 {
        let mut g = 0i64;
        for gap in &self.gaps {
            let rounded = ((gap + 30) / 60) * 60;
            if rounded > 0 {
                g = gcd(g, rounded);
            }
        }
        if self.gaps.len() < 2 || g == 0 {
            return self.default_secs;
        }
        if !self.usual_refuted && g > self.default_secs && g % self.default_secs == 0 {
            return self.default_secs;
        }
        g.clamp(300, 12 * 3600)
    }

    /// The first expected upload strictly after `after_ms` (ms), by cadence and phase.
    fn next_after(&self, after_ms: i64) -> i64 {
        let cadence = self.cadence_secs() * 1000;
        match self.last {
            None => after_ms,
            Some(last) => {
                let last = last * 1000;
                if after_ms < last {
                    return last;
                }
                last + ((after_ms - last) / cadence + 1) * cadence
            }
        }
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a.abs() } else { gcd(b, a % b) }
}

/// Learns the daylight window per local date, in seconds of the day of the zone's standard time:
/// the sun keeps to standard time, not to the clocks, so a window learned in summer time still
/// fits the days after the clocks go back (and the other way round).
#[derive(Debug, Clone, Default)]
struct Daylight {
    /// Local date → (first, last) second of the day with production, standard time.
    days: BTreeMap<NaiveDate, (i64, i64)>,
}

impl Daylight {
    fn observe(&mut self, tz: &Zone, end_at: i64, wh: i64) {
        if wh <= 0 {
            return;
        }
        // Counted from the local day's standard-time midnight, as `SiteState::window_on` places it.
        let t = end_at - 1;
        let date = tz.local_date(t);
        let secs = t - tz.standard_midnight(date);
        let entry = self.days.entry(date).or_insert((secs, secs));
        entry.0 = entry.0.min(secs - 300);
        entry.1 = entry.1.max(secs);
        while self.days.len() > 7 {
            let first = *self.days.keys().next().expect("not empty");
            self.days.remove(&first);
        }
    }

    /// The window in seconds of the day, standard time: the widest of the recent days, with a margin;
    /// 06:00–20:00 until something was learned. The newest day may be unfinished (the bridge
    /// started, or it is now, in daylight): it may widen the start but not set the end, or "dusk"
    /// would fall just after the last reading.
    fn window(&self) -> (i64, i64) {
        let (before, after) = (DAWN_MARGIN / 1000, DUSK_MARGIN / 1000);
        let Some((newest, newest_w)) = self.days.iter().next_back() else { return (6 * 3600, 20 * 3600) };
        let start = self.days.values().map(|w| w.0).min().unwrap_or(6 * 3600);
        let finished_end = self.days.iter().filter(|(d, w)| *d != newest && w.1 - w.0 >= 3600).map(|(_, w)| w.1).max();
        let end = match finished_end {
            Some(end) => end.max(newest_w.1),
            None => (20 * 3600 - after).max(newest_w.1),
        };
        ((start - before).max(0), (end + after).min(86_400))
    }
}

/// The scheduler's memory of one system.
#[derive(Debug, Clone)]
struct SiteState {
    profile: SiteProfile,
    tz: Zone,
    uploads: Uploads,
    daylight: Daylight,
    /// When each task last succeeded (ms).
    last_run: BTreeMap<Task, i64>,
    /// Tasks failing now: how many times in a row, and when to try again.
    failures: BTreeMap<Task, (u32, i64)>,
    /// Tasks the plan refuses.
    denied: Vec<Task>,
    /// Power polls and how many found nothing new.
    power_polls: u64,
    empty_polls: u64,
    /// How long after an upload its data can be read, learned from polls that found nothing.
    lag_ms: i64,
}

impl SiteState {
    /// The daylight window of the local day starting at `day_start_ms` (a day's start, or a day
    /// after one: the day is the one holding its noon), epoch ms. The window is kept in standard
    /// time, so it is counted from that day's standard-time midnight: right on the days the clocks
    /// change too, which have 23 or 25 hours.
    fn window_on(&self, day_start_ms: i64) -> (i64, i64) {
        let (a, b) = self.daylight.window();
        // The day holding its noon (standard and clock time are never half a day apart).
        let midnight = self.tz.standard_day_start(day_start_ms.div_euclid(1000) + 12 * 3600) * 1000;
        (midnight + a * 1000, midnight + b * 1000)
    }

    /// Local midnight (epoch ms) of the local day holding `now_ms`, and of the next day.
    fn day_bounds(&self, now_ms: i64) -> (i64, i64) {
        let since_midnight = self.tz.seconds_from_midnight(now_ms.div_euclid(1000)) * 1000 + now_ms.rem_euclid(1000);
        let start = now_ms - since_midnight;
        (start, start + DAY)
    }

    /// Whether `t` lies in the daylight window of its local day.
    fn is_daylight(&self, t: i64) -> bool {
        let (start, _) = self.day_bounds(t);
        let (a, b) = self.window_on(start);
        t >= a && t < b
    }

    fn window_len_ms(&self) -> i64 {
        let (a, b) = self.daylight.window();
        (b - a).max(3600) * 1000
    }
}

/// Plans every call of every system.
#[derive(Debug, Clone)]
pub struct Scheduler {
    sites: BTreeMap<u64, SiteState>,
}

impl Scheduler {
    /// A scheduler for these systems.
    pub fn new(profiles: Vec<SiteProfile>) -> Self {
        let sites = profiles
            .into_iter()
            .map(|p| {
                let tz = p.timezone.as_deref().and_then(Zone::named).unwrap_or_else(Zone::utc);
                let state = SiteState {
                    uploads: Uploads::new(p.cellular),
                    daylight: Daylight::default(),
                    tz,
                    last_run: BTreeMap::new(),
                    failures: BTreeMap::new(),
                    denied: Vec::new(),
                    power_polls: 0,
                    empty_polls: 0,
                    lag_ms: UPLOAD_LAG,
                    profile: p,
                };
                (state.profile.system_id, state)
            })
            .collect();
        Self { sites }
    }

    /// What to keep of `system_id` across a restart, at `now_ms`.
    pub fn memory(&self, system_id: u64, now_ms: i64) -> Option<Memory> {
        let site = self.sites.get(&system_id)?;
        Some(Memory {
            at_ms: now_ms,
            upload_last: site.uploads.last,
            upload_gaps: site.uploads.gaps.iter().copied().collect(),
            usual_refuted: site.uploads.usual_refuted,
            lag_ms: site.lag_ms,
            daylight: site.daylight.days.iter().map(|(d, (a, b))| (d.to_string(), *a, *b)).collect(),
            daylight_standard: true,
            intervals_ms: site.last_run.get(&Task::Intervals).copied(),
            energy_ms: site.last_run.get(&Task::Energy).copied(),
        })
    }

    /// Takes back what a previous run kept of `system_id`, unless it is older than
    /// `MEMORY_LIFE` or from the future (a clock set back): the intervals and the totals are then
    /// not read again before they are due. The power, the state of charge and the inverter data
    /// are read at start whatever is kept: they make the first state whole.
    pub fn recall(&mut self, system_id: u64, memory: &Memory, now_ms: i64) {
        let Some(site) = self.sites.get_mut(&system_id) else { return };
        if memory.at_ms > now_ms || now_ms - memory.at_ms > MEMORY_LIFE {
            return;
        }
        site.uploads.last = memory.upload_last;
        site.uploads.gaps = memory.upload_gaps.iter().copied().filter(|g| *g > 0).take(24).collect();
        site.uploads.usual_refuted = memory.usual_refuted;
        site.lag_ms = memory.lag_ms.clamp(LAG_RANGE.0, LAG_RANGE.1);
        let tz = site.tz.clone();
        site.daylight.days = memory
            .daylight
            .iter()
            .filter(|(_, a, b)| (-3_600..=90_000).contains(a) && (-3_600..=90_000).contains(b) && a <= b)
            .filter_map(|(d, a, b)| {
                let date = d.parse::<NaiveDate>().ok()?;
                let shift = if memory.daylight_standard { 0 } else { tz.dst_shift_secs(tz.midnight(date) + 12 * 3600) };
                Some((date, (a - shift, b - shift)))
            })
            .collect();
        while site.daylight.days.len() > 7 {
            site.daylight.days.pop_first();
        }
        for (task, at) in [(Task::Intervals, memory.intervals_ms), (Task::Energy, memory.energy_ms)] {
            if let Some(at) = at.filter(|at| *at <= now_ms) {
                site.last_run.insert(task, at);
            }
        }
    }

    /// The systems planned for.
    pub fn system_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.sites.keys().copied()
    }

    /// Replaces what is known of a system (its device list arrived late), keeping what was
    /// learned of it.
    pub fn set_profile(&mut self, profile: SiteProfile) {
        if let Some(site) = self.sites.get_mut(&profile.system_id) {
            if profile.cellular != site.profile.cellular {
                site.uploads.default_secs = Uploads::new(profile.cellular).default_secs;
            }
            site.profile = profile;
        }
    }

    /// Stops planning `task` for a system (the plan refuses it).
    pub fn deny(&mut self, system_id: u64, task: Task) {
        if let Some(site) = self.sites.get_mut(&system_id)
            && !site.denied.contains(&task)
        {
            site.denied.push(task);
        }
    }

    /// Power polls made and those that found nothing new, for a system.
    pub fn poll_counts(&self, system_id: u64) -> (u64, u64) {
        self.sites.get(&system_id).map_or((0, 0), |s| (s.power_polls, s.empty_polls))
    }

    /// The learned upload cadence of a system, seconds.
    pub fn cadence_secs(&self, system_id: u64) -> Option<i64> {
        self.sites.get(&system_id).map(|s| s.uploads.cadence_secs())
    }

    /// The learned daylight window of a system, seconds of the day in its zone's standard time.
    pub fn daylight_window(&self, system_id: u64) -> Option<(i64, i64)> {
        self.sites.get(&system_id).map(|s| s.daylight.window())
    }

    /// Records what a call found.
    pub fn record(&mut self, system_id: u64, task: Task, now_ms: i64, outcome: &Outcome) {
        let Some(site) = self.sites.get_mut(&system_id) else { return };
        if !outcome.ok {
            let streak = site.failures.get(&task).map_or(1, |(n, _)| n + 1);
            let retry = now_ms + retry_pause(system_id, task, streak, now_ms);
            site.failures.insert(task, (streak, retry));
            return;
        }
        site.last_run.insert(task, now_ms);
        site.failures.remove(&task);
        let fresh = outcome.last_report_at.map(|at| site.uploads.observe(at));
        if task == Task::Power || outcome.power {
            site.last_run.insert(Task::Power, now_ms);
            site.power_polls += 1;
            site.uploads.read(fresh == Some(true));
            if fresh == Some(true) {
                // Found the upload: try reading a little sooner next time.
                site.lag_ms = (site.lag_ms * 9 / 10).max(LAG_RANGE.0);
            } else {
                // Came too early for the upload we expected: wait longer after uploads.
                site.empty_polls += 1;
                site.lag_ms = (site.lag_ms * 2).min(LAG_RANGE.1);
            }
        }
        if let (Some(w), Some(at)) = (outcome.production_w, outcome.last_report_at)
            && w > 0
        {
            site.daylight.observe(&site.tz, at, w);
        }
        for (end_at, wh) in &outcome.intervals {
            site.daylight.observe(&site.tz, *end_at, *wh);
        }
    }

    /// Each system's hits per day out of `per_day`. A system whose uploads are rare (a cellular
    /// gateway uploads every few hours) gets no more than reading each upload needs, and what it
    /// leaves goes to the others. Among those, each keeps what its other reads cost, and the rest
    /// goes in proportion to its daylight: a longer day needs more reads for the same freshness,
    /// and the mean age over all systems is least when every system's reads are as far apart.
    fn shares(&self, per_day: f64) -> BTreeMap<u64, Share> {
        let mut shares = BTreeMap::new();
        let mut open: Vec<&SiteState> = self.sites.values().collect();
        let mut left = per_day;
        while !open.is_empty() {
            let equal = left / open.len() as f64;
            let capped: Vec<&SiteState> = open.iter().copied().filter(|s| equal > useful_per_day(s)).collect();
            if capped.is_empty() {
                // What each system spends besides power reads, then the rest by daylight length.
                // Those other reads are chosen on the equal share: what a longer day adds is
                // for power reads, not for totals that a shorter day would go without.
                let fair = Share { per_day: equal, fair: equal };
                let extras: Vec<f64> = open.iter().map(|s| DayPlan::new(s, fair).extras).collect();
                let rest = (left - extras.iter().sum::<f64>()).max(0.0);
                let windows: Vec<f64> = open.iter().map(|s| s.window_len_ms() as f64).collect();
                let daylight: f64 = windows.iter().sum();
                for ((s, extra), window) in open.iter().zip(extras).zip(windows) {
                    let per_day = extra + rest * window / daylight;
                    shares.insert(s.profile.system_id, Share { per_day, fair: equal });
                }
                return shares;
            }
            for s in capped {
                let cap = useful_per_day(s);
                shares.insert(s.profile.system_id, Share { per_day: cap, fair: cap });
                left -= cap;
                open.retain(|o| o.profile.system_id != s.profile.system_id);
            }
        }
        // Every system got all it can use well. The rest still goes to them (the most a larger
        // share buys is a read after every upload), or it would lie unspent at the month's end.
        let n = shares.len().max(1) as f64;
        for share in shares.values_mut() {
            share.per_day += left / n;
            share.fair = share.per_day;
        }
        shares
    }

    /// When each system's next power reading is planned (for display), in one pass.
    pub fn next_power_all(&self, now_ms: i64, budget: &Budget) -> BTreeMap<u64, i64> {
        let days_left = ((budget.month_end_ms - now_ms).max(HOUR) as f64) / DAY as f64;
        let reserve = (days_left.ceil() as u32) * RESERVE_PER_DAY + RESERVE_PER_MONTH;
        let spendable = budget.month_left.saturating_sub(reserve);
        if spendable == 0 {
            return BTreeMap::new();
        }
        let shares = self.shares(f64::from(spendable) / days_left);
        let not_before = now_ms.max(budget.next_free_ms);
        self.sites
            .values()
            .filter(|site| !site.denied.contains(&Task::Power))
            .filter_map(|site| {
                let due = DayPlan::new(site, shares[&site.profile.system_id]).due(site, Task::Power, now_ms)?;
                Some((site.profile.system_id, due.max(not_before)))
            })
            .collect()
    }

    /// The next call to make, or `None` when nothing fits the month's budget any more.
    pub fn next(&self, now_ms: i64, budget: &Budget) -> Option<Decision> {
        let not_before = now_ms.max(budget.next_free_ms);
        let days_left = ((budget.month_end_ms - now_ms).max(HOUR) as f64) / DAY as f64;
        let reserve = (days_left.ceil() as u32) * RESERVE_PER_DAY + RESERVE_PER_MONTH;
        let spendable = budget.month_left.saturating_sub(reserve);
        if spendable == 0 || self.sites.is_empty() {
            return None;
        }
        let per_day = f64::from(spendable) / days_left;
        let shares = self.shares(per_day);
        let mut best: Option<Decision> = None;
        for site in self.sites.values() {
            let plan = DayPlan::new(site, shares[&site.profile.system_id]);
            for task in Task::ALL {
                if site.denied.contains(&task) {
                    continue;
                }
                let Some(due) = plan.due(site, task, now_ms) else { continue };
                let mut at = budget.fits_at(due.max(not_before), site.profile.cost(task));
                let power = task == Task::Power;
                let task = if power && plan.folds_backfill(site, at, now_ms) {
                    // It may cost more hits than the power read: they must all fit.
                    at = budget.fits_at(at, site.profile.cost(Task::Intervals));
                    Task::Intervals
                } else {
                    task
                };
                let better = match best {
                    None => true,
                    Some(b) => at < b.at_ms,
                };
                if better && site.profile.cost(task) <= spendable {
                    best = Some(Decision { at_ms: at, system_id: site.profile.system_id, task, power });
                }
            }
        }
        best
    }
}

/// The most hits a day a system can use well: a power read after every daylight upload, plus
/// the evening reads and the rich extras.
fn useful_per_day(site: &SiteState) -> f64 {
    let cadence = (site.uploads.cadence_secs() * 1000).max(5 * MINUTE);
    let reads = (site.window_len_ms() / cadence + 1) as f64;
    let p = &site.profile;
    reads * f64::from(p.cost(Task::Power))
        + if p.battery { 24.0 } else { 0.0 }
        + if p.metered || p.battery { 13.0 * f64::from(p.cost(Task::Energy)) } else { 0.0 }
        + f64::from(p.cost(Task::Intervals))
        + 1.0
}

/// A system's hits per day.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Share {
    /// All of them.
    per_day: f64,
    /// The share its reads besides power reads are chosen on: the equal share of the systems
    /// that split the rest by daylight (see `Scheduler::shares`), else `per_day`.
    fair: f64,
}

/// How one system spends its share of a day.
#[derive(Debug, Clone, Copy)]
struct DayPlan {
    /// Time between power polls during daylight, ms.
    power_every: i64,
    /// Time between energy polls during daylight (metered sites), ms; `None`: only after sunset.
    energy_every: Option<i64>,
    /// Whether the after-sunset totals of a metered site fit.
    evening_energy: bool,
    /// The evening reads run every this many days (2 when the share is tight).
    evening_every: i64,
    /// Whether the after-sunset interval back-fill fits.
    backfill: bool,
    /// Whether the inverter read fits every night (else it is weekly).
    inverters: bool,
    /// Time between state-of-charge reads (battery sites), ms.
    soc_every: Option<i64>,
    /// Hits a day spent on other things than power reads.
    extras: f64,
}

impl DayPlan {
    /// Splits a day's hits: power polls first (they are what users watch); the evening totals,
    /// interval back-fill and inverter data only when the share is large enough to afford them
    /// without starving the power polls. Which of those fit is decided on `share.fair`; the power
    /// polls get the rest of `share.per_day`.
    fn new(site: &SiteState, share: Share) -> Self {
        let p = &site.profile;
        let mut left = share.fair;
        let metered = p.metered || p.battery;
        // A tight share takes the evening reads every other day: the totals and intervals still
        // arrive whole (they cover the days between), and the power reads get the difference.
        let evening_every = if share.fair < 24.0 { 2 } else { 1 };
        let evening_energy = metered && left >= 10.0;
        if evening_energy {
            left -= f64::from(p.cost(Task::Energy)) / evening_every as f64;
        } else if metered {
            left -= f64::from(p.cost(Task::Energy)) / TOTALS_EVERY_DAYS as f64;
        }
        let backfill = left >= 8.0;
        if backfill {
            left -= f64::from(p.cost(Task::Intervals)) / evening_every as f64;
        } else {
            left -= f64::from(p.cost(Task::Intervals)) / LEARN_EVERY_DAYS as f64;
        }
        // The inverter data: each micro's lifetime energy (and, on plans with device-level data,
        // its 5-minute series). Nightly on a rich share, weekly on a tight one, so that every
        // plan has its microinverters.
        let inverters = left >= 40.0;
        let inverters_every = if inverters { 1 } else { TOTALS_EVERY_DAYS };
        left -= f64::from(p.cost(Task::Inverters)) / inverters_every as f64;
        // A battery's state of charge: a read for every six power reads, at least one a day and
        // at most one an hour, spread over the whole day.
        let soc_every = p.battery.then(|| {
            let polls = (left / 7.0).clamp(1.0, 24.0);
            left -= polls;
            (DAY as f64 / polls) as i64
        });
        let window = site.window_len_ms();
        // A rich share also refreshes the metered totals during the day.
        let energy_every = if metered && left >= 60.0 {
            let energy_polls = (left / 6.0 / f64::from(p.cost(Task::Energy))).floor().min(12.0);
            left -= energy_polls * f64::from(p.cost(Task::Energy));
            (energy_polls >= 1.0).then(|| (window as f64 / energy_polls) as i64)
        } else {
            None
        };
        let extras = share.fair - left;
        let polls = ((share.per_day - extras) / f64::from(p.cost(Task::Power))).max(0.25);
        let power_every = ((window as f64) / polls) as i64;
        Self {
            power_every: power_every.max(5 * MINUTE),
            energy_every,
            evening_energy,
            evening_every,
            backfill,
            inverters,
            soc_every,
            extras,
        }
    }

    /// When `task` is next due for `site`, at or after `now_ms`.
    fn due(&self, site: &SiteState, task: Task, now_ms: i64) -> Option<i64> {
        let due = self.due_after_success(site, task, now_ms)?;
        // A failing task waits out its pause; what it was after is still wanted then (its due
        // time, counted from the last success, has usually passed). Power reads keep to daylight.
        let Some((_, retry)) = site.failures.get(&task) else { return Some(due) };
        let at = due.max(*retry);
        if task != Task::Power {
            return Some(at);
        }
        let (day_start, next_day) = site.day_bounds(at);
        let (dawn, dusk) = site.window_on(day_start);
        Some(in_daylight(site, at, dawn, dusk, site.window_on(next_day).0))
    }

    /// The power read after one at `last`, or `None` when `last` was the day's last.
    ///
    /// Each read shows its upload until the next read, and the day's last until the production
    /// ends, so the day's age is least when those stretches are equal: the rest of the day, from
    /// `last` to the usual end of the production, is cut into the whole number of stretches
    /// nearest the planned spacing, and the next read comes one stretch on. Reads can only
    /// usefully fall just after an upload, so the stretch is rounded to whole upload cadences;
    /// what one rounding gains or loses is spread over the day's later stretches, which are
    /// planned again from each read as it is made.
    fn next_power_read(&self, site: &SiteState, last: i64) -> Option<i64> {
        let cadence = site.uploads.cadence_secs() * 1000;
        let k = self.gap_steps(site, last)?;
        // Counted from the newest upload read, or from the next one when that is long past.
        let after_last = site.uploads.next_after(last - site.lag_ms);
        let base = site.uploads.last.map_or(after_last, |seen| seen * 1000);
        let at = base + k * cadence + site.lag_ms;
        Some(if at > last { at } else { after_last + site.lag_ms })
    }

    /// The upload cadences from a power read at `last` to the next, `None` if there is none
    /// today (see above).
    fn gap_steps(&self, site: &SiteState, last: i64) -> Option<i64> {
        let cadence = site.uploads.cadence_secs() * 1000;
        let (day_start, _) = site.day_bounds(last);
        let (_, dusk) = site.window_on(day_start);
        let rest = (dusk - DUSK_MARGIN - last) as f64;
        let stretches = (rest / self.power_every as f64).round();
        if stretches < 2.0 {
            return None;
        }
        Some(((rest / stretches / cadence as f64).round() as i64).max(1))
    }

    /// Whether the power read planned at `at` should be the interval read instead: the back-fill
    /// is owed this evening, and `at` is the day's last power read (the one after it would fall
    /// after dusk). That read has the day's intervals up to its upload (the few after it come
    /// with the next back-fill) and the newest production power; a metered site's consumption
    /// and battery power stay as the read before left them, as they do all night.
    fn folds_backfill(&self, site: &SiteState, at: i64, now_ms: i64) -> bool {
        if site.denied.contains(&Task::Intervals) || site.failures.contains_key(&Task::Intervals) {
            return false;
        }
        let (day_start, _) = site.day_bounds(at);
        let (dawn, dusk) = site.window_on(day_start);
        let owed =
            self.due_after_success(site, Task::Intervals, now_ms).is_some_and(|due| due <= dusk + BACKFILL_AFTER_DUSK);
        owed && at >= dawn && at < dusk && self.gap_steps(site, at).is_none()
    }

    /// When `task` is next due for `site` counting from its last success.
    fn due_after_success(&self, site: &SiteState, task: Task, now_ms: i64) -> Option<i64> {
        let last = site.last_run.get(&task).copied();
        let (day_start, next_day) = site.day_bounds(now_ms);
        let (dawn, dusk) = site.window_on(day_start);
        let (next_dawn, _) = site.window_on(next_day);
        match task {
            Task::Power => {
                let Some(last) = last else { return Some(now_ms) };
                // Planned again later, the read may come out earlier than it did (the share moved):
                // if that moment has passed, it is now, and now may be after dusk.
                // After the day's last read, the next is the following dawn's.
                let at = self
                    .next_power_read(site, last)
                    .unwrap_or_else(|| site.window_on(site.day_bounds(last).0).1)
                    .max(now_ms);
                let moved = in_daylight(site, at, dawn, dusk, next_dawn);
                if moved == at {
                    return Some(at);
                }
                // Moved to the start of the daylight window, which lies a margin before the first
                // production: read the last upload before the production starts (the first after
                // the window's start when uploads are rarer than the margin), so the night's value
                // is gone once it starts and no read goes to the dark; if that upload only comes
                // later, read whatever arrived overnight that was not read yet (a cellular
                // gateway's last upload may be hours old by then), else wait for it.
                let cadence = site.uploads.cadence_secs() * 1000;
                let production = moved + DAWN_MARGIN;
                let last_dark = site.uploads.next_after(production - site.lag_ms - cadence) + site.lag_ms;
                let first = if last_dark >= moved {
                    last_dark
                } else {
                    site.uploads.next_after(moved - site.lag_ms - 1) + site.lag_ms
                };
                let previous = first - cadence;
                let unread = site.uploads.last.is_some_and(|seen| seen * 1000 + site.lag_ms < previous);
                Some(if first <= moved + DAWN_MARGIN || !unread { first } else { moved })
            }
            Task::Soc => {
                let every = self.soc_every?;
                let Some(last) = last else { return Some(now_ms) };
                Some(last + every)
            }
            Task::Energy => {
                if !(site.profile.metered || site.profile.battery) {
                    return None;
                }
                let Some(last) = last else { return Some(now_ms) };
                // The day's final totals, after dusk (every `evening_every` days, or every
                // `TOTALS_EVERY_DAYS` when the share is too tight for them).
                let evening = dusk + 15 * MINUTE;
                let every = if self.evening_energy { self.evening_every } else { TOTALS_EVERY_DAYS };
                let next = evening_due(last, evening, evening, every);
                if now_ms >= dusk && next == evening {
                    return Some(evening.max(now_ms));
                }
                match self.energy_every {
                    Some(every) => Some(in_daylight(site, last + every, dawn, dusk, next_dawn)),
                    None => Some(next),
                }
            }
            Task::Intervals => {
                // One read at start to learn the daylight window, then one after each dusk (every
                // other dusk when the share is tight). Without the back-fill they still come every
                // few days: they are what teaches the daylight window. Power reads see production
                // only where they fall, which is inside the window, so a window learned from them
                // alone would shrink towards them day by day and miss the dawn.
                // A read in the day's last power gaps counts as the evening's (it may have been
                // the day's last power read, see `folds_backfill`).
                let Some(last) = last else { return Some(now_ms) };
                let every = if self.backfill { self.evening_every } else { LEARN_EVERY_DAYS };
                let evening = dusk + BACKFILL_AFTER_DUSK;
                let counts_from = dusk - 2 * self.power_every - site.uploads.cadence_secs() * 1000;
                Some(evening_due(last, counts_from.min(evening), evening, every))
            }
            Task::Inverters => {
                // Once at start, so the inverters are known from the first day; then after dusk,
                // nightly or (on a tight share) weekly.
                let Some(last) = last else { return Some(now_ms) };
                let evening = dusk + 45 * MINUTE;
                let every = if self.inverters { 1 } else { TOTALS_EVERY_DAYS };
                Some(evening_due(last, evening, evening, every))
            }
        }
    }
}

/// How long a task that failed `streak` times in a row waits before it is tried again: 2, 4, 8 …
/// minutes, at most 30, each lengthened by up to as much again at random, so that bridges (and
/// systems) that failed together do not retry together. The randomness is seeded by the failure,
/// which keeps the scheduler a pure function of what it was told.
fn retry_pause(system_id: u64, task: Task, streak: u32, now_ms: i64) -> i64 {
    let seed = system_id.rotate_left(17) ^ (task as u64).rotate_left(7) ^ now_ms as u64;
    let pause = ExponentialBuilder::default()
        .with_min_delay(std::time::Duration::from_secs(120))
        .with_max_delay(std::time::Duration::from_secs(30 * 60))
        .with_factor(2.0)
        .with_jitter()
        .with_jitter_seed(seed)
        .without_max_times()
        .build()
        .nth(streak.saturating_sub(1) as usize)
        .unwrap_or(std::time::Duration::from_secs(3600));
    i64::try_from(pause.as_millis()).unwrap_or(HOUR)
}

/// A read after dusk every `every` days: tonight's `evening` if the last one (`last`) came before
/// `counts_from` of `every - 1` days ago, else tomorrow's.
fn evening_due(last: i64, counts_from: i64, evening: i64, every: i64) -> i64 {
    if last < counts_from - (every - 1) * DAY { evening } else { evening + DAY }
}

/// `at` if it lies in daylight, else the next dawn's first moment.
fn in_daylight(site: &SiteState, at: i64, dawn: i64, dusk: i64, next_dawn: i64) -> i64 {
    if at < dawn {
        dawn
    } else if at >= dusk {
        if at < next_dawn {
            next_dawn
        } else if site.is_daylight(at) {
            at
        } else {
            let (start, _) = site.day_bounds(at);
            let (d, _) = site.window_on(start);
            if at < d { d } else { site.window_on(start + DAY).0 }
        }
    } else {
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-02T00:00:00Z, a Monday.
    const T0: i64 = 1_793_577_600_000;

    fn micro_site() -> SiteProfile {
        SiteProfile {
            system_id: 1,
            timezone: Some("UTC".into()),
            metered: false,
            battery: false,
            cellular: false,
            micro_pages: 0,
        }
    }

    fn budget(now: i64, left: u32) -> Budget {
        Budget {
            month_left: left,
            next_free_ms: now,
            month_end_ms: T0 + 29 * DAY,
            minute_limit: 10,
            recent_ms: Vec::new(),
        }
    }

    /// A restart with what the last run learned reads no intervals or totals that are not due,
    /// and picks up the cadence and daylight window; a memory too old is not used.
    #[test]
    fn a_kept_memory_spares_the_reads_that_are_not_due() {
        let metered = SiteProfile { metered: true, ..micro_site() };
        let calls = calls_made_on(metered.clone(), 20, 2);
        let mut ran = Scheduler::new(vec![metered.clone()]);
        for d in &calls {
            let seen = d.at_ms / 1000 / 900 * 900;
            let producing = (6 * 3600..20 * 3600).contains(&seen.rem_euclid(86_400));
            let outcome = Outcome {
                ok: true,
                last_report_at: Some(seen),
                production_w: Some(if producing { 500 } else { 0 }),
                ..Outcome::default()
            };
            ran.record(1, d.task, d.at_ms, &outcome);
        }
        let stop = calls.last().expect("calls").at_ms + MINUTE;
        let memory = ran.memory(1, stop).expect("a memory");
        let json = serde_json::to_string(&memory).unwrap();
        let kept: Memory = serde_json::from_str(&json).unwrap();
        assert_eq!(kept, memory, "it survives the file");
        assert!(!kept.daylight.is_empty() && kept.upload_gaps.len() >= 2, "something was learned: {kept:?}");
        let mut taken = Scheduler::new(vec![metered.clone()]);
        taken.recall(1, &kept, stop);
        assert_eq!(taken.memory(1, stop), Some(kept.clone()), "the cadence, daylight and last reads are taken back");
        let first_tasks = |recalled_at: Option<i64>| -> Vec<Task> {
            let mut s = Scheduler::new(vec![metered.clone()]);
            if let Some(at) = recalled_at {
                s.recall(1, &Memory { at_ms: at, ..kept.clone() }, stop);
            }
            let mut t = stop;
            let mut tasks = Vec::new();
            for _ in 0..3 {
                let d = s.next(t, &budget(t, 500)).expect("budget");
                t = d.at_ms.max(t);
                s.record(1, d.task, t, &Outcome { ok: true, ..Outcome::default() });
                tasks.push(d.task);
            }
            tasks
        };
        let fresh = first_tasks(None);
        assert!(fresh.contains(&Task::Intervals) && fresh.contains(&Task::Energy), "{fresh:?}");
        let recalled = first_tasks(Some(stop - MINUTE));
        assert!(!recalled.contains(&Task::Intervals) && !recalled.contains(&Task::Energy), "{recalled:?}");
        let stale = first_tasks(Some(stop - MEMORY_LIFE - MINUTE));
        assert!(stale.contains(&Task::Intervals), "an old memory is not used: {stale:?}");
    }

    #[test]
    fn cadence_is_learned_from_skipped_uploads() {
        let mut u = Uploads::new(false);
        for at in [0, 1800, 4500, 5400, 8100] {
            u.observe(at + 1_000_000);
        }
        assert_eq!(u.cadence_secs(), 900);
        assert_eq!(u.next_after((1_008_100 + 10) * 1000), (1_008_100 + 900) * 1000);
        let cellular = Uploads::new(true);
        assert_eq!(cellular.cadence_secs(), 6 * 3600);
    }

    #[test]
    fn daylight_window_is_learned_in_local_time() {
        let tz = &Zone::named("Australia/Sydney").unwrap();
        let mut d = Daylight::default();
        // 2026-11-02 local, AEDT (UTC+11): a 5-minute interval ending 05:35 and one ending 19:10.
        d.observe(tz, T0 / 1000 - 19_800 + 300, 10); // 2026-11-01T18:35Z
        d.observe(tz, T0 / 1000 + 29_400, 10); // 2026-11-02T08:10Z
        d.observe(tz, T0 / 1000 + 36_000, 0); // 19:00Z = 06:00 next day, no production: ignored
        d.observe(tz, T0 / 1000 + 86_400, 10); // 11:00 on 2026-11-03: the 2nd is a finished day
        // Kept in standard time (AEST, an hour behind the clocks in November).
        let (a, b) = d.window();
        assert_eq!(
            a,
            4 * 3600 + 30 * 60 - 1 - 20 * 60,
            "the first producing interval began 05:30 AEDT, less the margin"
        );
        assert_eq!(b, 18 * 3600 + 10 * 60 - 1 + 5 * 60, "the last ended 19:10 AEDT, plus the margin");
    }

    /// The sun keeps to standard time: a window learned before the clocks go back comes an hour
    /// earlier on the clocks after, rather than leaving the first hour of production to the
    /// night's value and reading the evening an hour late.
    #[test]
    fn the_daylight_window_follows_the_sun_when_the_clocks_change() {
        let profile = SiteProfile { timezone: Some("America/Los_Angeles".into()), ..micro_site() };
        let mut sched = Scheduler::new(vec![profile]);
        let site = sched.sites.get_mut(&1).unwrap();
        let tz = site.tz.clone();
        let at = |date: &str, h: i64, m: i64| {
            let day: NaiveDate = date.parse().unwrap();
            tz.midnight(day) + h * 3600 + m * 60
        };
        // Saturday 2026-10-31 (PDT): production from 07:25 to 18:10 on the clocks.
        for (h, m) in [(7, 25), (12, 0), (18, 10)] {
            site.daylight.observe(&tz, at("2026-10-31", h, m), 10);
        }
        // Sunday the clocks go back an hour at 02:00; Monday's first production, 06:30 PST.
        site.daylight.observe(&tz, at("2026-11-02", 6, 30), 10);
        let monday = at("2026-11-02", 0, 0) * 1000;
        let on_monday = site.window_on(monday);
        let (dawn, dusk) = on_monday;
        assert_eq!(dawn, (at("2026-11-02", 6, 20) - 1) * 1000 - DAWN_MARGIN, "Saturday's 07:20 PDT is 06:20 PST");
        assert_eq!(dusk, (at("2026-11-02", 17, 10) - 1) * 1000 + DUSK_MARGIN, "Saturday's 18:10 PDT is 17:10 PST");
        // Sunday, 25 hours long: the window on its clocks after they went back.
        let sunday = at("2026-11-01", 0, 0) * 1000;
        let utc = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().unwrap().timestamp_millis();
        let (dawn_sunday, dusk_sunday) = site.window_on(sunday);
        assert_eq!(dawn_sunday, utc("2026-11-01T14:19:59Z") - DAWN_MARGIN, "06:20 PST, less the margin");
        assert_eq!(dusk_sunday, utc("2026-11-02T01:09:59Z") + DUSK_MARGIN, "17:10 PST, plus the margin");
        assert_eq!(site.window_on(sunday + DAY), on_monday, "a day on from Sunday's start is Monday");
        // Saturday itself still reads on its own clocks.
        let (saturday_dawn, _) = site.window_on(at("2026-10-31", 0, 0) * 1000);
        assert_eq!(saturday_dawn, (at("2026-10-31", 7, 20) - 1) * 1000 - DAWN_MARGIN);

        // A memory kept before windows were in standard time holds the clocks' seconds.
        let mut memory = sched.memory(1, monday).unwrap();
        let summer = |d: &String| 3600 * i64::from(d == "2026-10-31");
        memory.daylight = memory.daylight.iter().map(|(d, a, b)| (d.clone(), a + summer(d), b + summer(d))).collect();
        memory.daylight_standard = false;
        let mut again =
            Scheduler::new(vec![SiteProfile { timezone: Some("America/Los_Angeles".into()), ..micro_site() }]);
        again.recall(1, &memory, monday);
        assert_eq!(again.sites[&1].window_on(monday), on_monday, "taken back less the shift");
    }

    #[test]
    fn an_unfinished_day_does_not_end_the_window() {
        let mut d = Daylight::default();
        let utc = &Zone::utc();
        // Started at 09:00 on a fresh bridge: production seen from 07:00 to 09:00 only.
        d.observe(utc, T0 / 1000 + 7 * 3600, 10);
        d.observe(utc, T0 / 1000 + 9 * 3600, 10);
        let (a, b) = d.window();
        assert_eq!(a, 7 * 3600 - 1 - 300 - 20 * 60);
        assert_eq!(b, 20 * 3600, "the default dusk holds until a whole day is known");
        // The next day: yesterday's last production (17:00) is final, today's start is kept.
        d.observe(utc, T0 / 1000 + 17 * 3600, 10);
        d.observe(utc, T0 / 1000 + DAY / 1000 + 8 * 3600, 10);
        let (_, b) = d.window();
        assert_eq!(b, 17 * 3600 - 1 + 5 * 60);
    }

    #[test]
    fn nothing_is_planned_at_night_but_the_evening_reads() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let now = T0 + 22 * HOUR; // 22:00 UTC, outside 06:00–20:00
        let b = budget(now, 900);
        // First call: learn (intervals) and power at once.
        let first = s.next(now, &b).unwrap();
        assert_eq!(first.at_ms, now);
        for task in [Task::Power, Task::Intervals] {
            s.record(1, task, now, &Outcome { ok: true, last_report_at: Some(now / 1000 - 100), ..Outcome::default() });
        }
        // Until dawn only the evening reads run, each once.
        let mut t = now + MINUTE;
        loop {
            let next = s.next(t, &b).unwrap();
            if next.task == Task::Power {
                assert!(next.at_ms >= T0 + DAY + 6 * HOUR, "the next power poll waits for dawn: {next:?}");
                break;
            }
            assert!(next.at_ms < T0 + DAY + 6 * HOUR, "{next:?}");
            assert_ne!(next.task, Task::Intervals, "the back-fill already ran tonight");
            t = next.at_ms;
            s.record(1, next.task, t, &Outcome { ok: true, ..Outcome::default() });
        }
    }

    /// With a share too tight for the daily back-fill, the intervals still come every few days and
    /// keep the daylight window whole: learned from power reads alone, it shrank towards the reads
    /// day by day, and the dawn read drifted hours into the morning.
    #[test]
    fn a_tight_share_keeps_learning_the_daylight_window() {
        // About six hits a day.
        let calls = calls_made(6, 14);
        let mut first_read: BTreeMap<i64, i64> = BTreeMap::new();
        for d in calls.iter().filter(|d| d.power) {
            first_read.entry(d.at_ms.div_euclid(DAY)).or_insert(d.at_ms.rem_euclid(DAY));
        }
        let interval_days: Vec<i64> =
            calls.iter().filter(|d| d.task == Task::Intervals).map(|d| d.at_ms.div_euclid(DAY) - T0 / DAY).collect();
        let late: Vec<(i64, i64)> = first_read
            .iter()
            .filter(|(day, at)| **day >= T0 / DAY + 7 && **at > 6 * HOUR + 15 * MINUTE)
            .map(|(day, at)| (day - T0 / DAY, at / MINUTE))
            .collect();
        assert!(late.is_empty(), "first reads after 06:15 (day, minute of the day): {late:?}");
        assert!(interval_days.len() >= 5, "intervals every few days: {interval_days:?}");
        assert!(interval_days.windows(2).all(|w| w[1] - w[0] <= 3), "{interval_days:?}");
    }

    /// A battery's state of charge is a read of its own, day and night, and no power read is
    /// spent on it.
    #[test]
    fn a_battery_has_its_state_of_charge_read_day_and_night() {
        let site = SiteProfile { metered: true, battery: true, ..micro_site() };
        assert_eq!(site.cost(Task::Soc), 1);
        let mut s = Scheduler::new(vec![site]);
        let mut left = 12 * 29 + 29 + RESERVE_PER_MONTH;
        let mut t = T0;
        let mut soc = Vec::new();
        while t < T0 + 4 * DAY {
            let d = s.next(t, &budget(t, left)).expect("budget left");
            t = d.at_ms;
            left -= s.sites[&1].profile.cost(d.task);
            if d.task == Task::Soc {
                soc.push(t);
            }
            s.record(1, d.task, t, &Outcome { ok: true, last_report_at: Some(t / 1000), ..Outcome::default() });
        }
        assert!(soc.len() >= 4, "at least one a day: {soc:?}");
        assert!(soc.iter().any(|at| !s.sites[&1].is_daylight(*at)), "and at night too: {soc:?}");
        assert!(soc.windows(2).all(|w| w[1] - w[0] >= HOUR), "at most one an hour: {soc:?}");
    }

    #[test]
    fn power_polls_wait_for_the_next_upload() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let noon = T0 + 12 * HOUR;
        let b = budget(noon, 100_000); // plenty: every upload
        let upload = noon / 1000 - 120; // uploaded two minutes ago
        for task in Task::ALL {
            s.record(1, task, noon, &Outcome { ok: true, last_report_at: Some(upload - 900), ..Outcome::default() });
        }
        s.record(1, Task::Power, noon, &Outcome { ok: true, last_report_at: Some(upload), ..Outcome::default() });
        let d = s.next(noon + 1000, &b).unwrap();
        assert_eq!(d.task, Task::Power);
        let lag = s.sites[&1].lag_ms;
        assert!(lag < UPLOAD_LAG, "two polls that found new data shortened the lag: {lag}");
        assert_eq!(d.at_ms, (upload + 900) * 1000 + lag, "just after the next upload");
    }

    #[test]
    fn the_first_read_of_the_day_takes_the_last_upload_before_production_or_the_overnight_one() {
        // Uploads every 15 minutes at :02, :17, :32, :47; the last read at 21:47 the day before.
        let mut s = Scheduler::new(vec![micro_site()]);
        let evening = T0 + 22 * HOUR;
        let b = budget(evening, 100_000);
        for at in [21 * 3600 + 17 * 60, 21 * 3600 + 32 * 60, 21 * 3600 + 47 * 60] {
            let ok = Outcome { ok: true, last_report_at: Some(T0 / 1000 + at), ..Outcome::default() };
            s.record(1, Task::Power, evening, &ok);
        }
        let lag = s.sites[&1].lag_ms;
        // The default window starts at 06:00, a margin before the production is expected.
        let dawn = T0 + DAY + 6 * HOUR;
        assert_eq!(
            s.next_power_all(evening, &b)[&1],
            dawn + 17 * MINUTE + lag,
            "the 06:17 upload: not the 06:02 one, in the dark, nor the 06:32 one, after the production started"
        );

        // A cellular gateway uploads every 6 hours: at 06:00 the 04:00 upload is still unread, and
        // waiting for the 10:00 one would show last evening's data for four hours.
        let cellular = SiteProfile { cellular: true, ..micro_site() };
        let mut s = Scheduler::new(vec![cellular.clone()]);
        let read = |s: &mut Scheduler, now: i64, upload: i64| {
            s.record(
                1,
                Task::Power,
                now,
                &Outcome { ok: true, last_report_at: Some(upload / 1000), ..Outcome::default() },
            )
        };
        read(&mut s, T0 + 16 * HOUR + MINUTE, T0 + 16 * HOUR);
        assert_eq!(s.next_power_all(evening, &b)[&1], dawn, "the overnight upload at once");
        // Once the 04:00 upload was read, the next read waits for the 10:00 one.
        let mut s = Scheduler::new(vec![cellular]);
        read(&mut s, T0 + DAY + 4 * HOUR + MINUTE, T0 + DAY + 4 * HOUR);
        let lag = s.sites[&1].lag_ms;
        assert_eq!(s.next_power_all(T0 + DAY + 5 * HOUR, &b)[&1], T0 + DAY + 10 * HOUR + lag);
    }

    #[test]
    fn a_late_device_list_changes_the_profile_and_keeps_what_was_learned() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let noon = T0 + 12 * HOUR;
        for at in [0, 900, 1800] {
            let ok = Outcome { ok: true, last_report_at: Some(noon / 1000 - 3600 + at), ..Outcome::default() };
            s.record(1, Task::Power, noon, &ok);
        }
        s.set_profile(SiteProfile { metered: true, battery: true, ..micro_site() });
        let site = &s.sites[&1];
        assert_eq!(site.profile.cost(Task::Energy), 5, "summary, three meter reads and the battery");
        assert_eq!(site.uploads.gaps.len(), 2, "the uploads seen are kept");
        s.set_profile(SiteProfile { cellular: true, ..micro_site() });
        assert_eq!(s.sites[&1].uploads.default_secs, 6 * 3600);
    }

    #[test]
    fn next_power_all_agrees_with_next() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let noon = T0 + 12 * HOUR;
        let b = budget(noon, 100_000);
        for task in Task::ALL {
            s.record(
                1,
                task,
                noon,
                &Outcome { ok: true, last_report_at: Some(noon / 1000 - 60), ..Outcome::default() },
            );
        }
        let d = s.next(noon + 1000, &b).unwrap();
        assert_eq!(d.task, Task::Power);
        assert_eq!(s.next_power_all(noon + 1000, &b)[&1], d.at_ms);
        s.deny(1, Task::Power);
        assert!(s.next_power_all(noon + 1000, &b).is_empty());
    }

    #[test]
    fn the_month_budget_is_never_planned_past() {
        let s = Scheduler::new(vec![micro_site()]);
        let now = T0;
        // 29 days left: the reserve is 29 token refreshes and 10 button presses.
        assert!(s.next(now, &budget(now, 39)).is_none());
        assert!(s.next(now, &budget(now, 40)).is_some());
    }

    #[test]
    fn decisions_wait_for_the_minute_window() {
        let s = Scheduler::new(vec![micro_site()]);
        let now = T0 + 12 * HOUR;
        let b = Budget { next_free_ms: now + 30_000, ..budget(now, 900) };
        assert_eq!(s.next(now, &b).unwrap().at_ms, now + 30_000);
        // Nine hits in the last minute: a one-hit call fits now, a two-hit one when the oldest leaves
        // the window (a minute and the ledger's second of margin).
        let recent: Vec<i64> = (0..9).map(|k| now - 50_000 + k * 1000).collect();
        let b = Budget { recent_ms: recent, ..budget(now, 900) };
        assert_eq!(b.fits_at(now, 1), now);
        assert_eq!(b.fits_at(now, 2), now - 50_000 + MINUTE + 1000);
        assert_eq!(b.fits_at(now, 10), now - 50_000 + 8_000 + MINUTE + 1000);
    }

    #[test]
    fn failures_pause_with_growing_waits() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let noon = T0 + 12 * HOUR;
        let b = budget(noon, 100_000);
        let earlier = noon - HOUR;
        for task in Task::ALL {
            s.record(
                1,
                task,
                earlier,
                &Outcome { ok: true, last_report_at: Some(earlier / 1000), ..Outcome::default() },
            );
        }
        // Failed at 12:00, then at each retry: the pauses are 2, 4, 8, 16, 30, 30 minutes, each
        // lengthened by up to as much again, and the retry holds whenever the plan is asked.
        let mut at = noon;
        for (k, floor) in [2, 4, 8, 16, 30, 30].into_iter().enumerate() {
            s.record(1, Task::Power, at, &Outcome::default());
            let retry = s.next(at, &b).unwrap();
            assert_eq!(retry.task, Task::Power);
            let pause = retry.at_ms - at;
            assert!(pause >= floor * MINUTE && pause < 2 * floor * MINUTE, "retry {k}: {pause} ms");
            assert_eq!(s.next(retry.at_ms, &b), Some(retry), "unchanged when asked again at the retry time");
            at = retry.at_ms;
        }
        // Two systems failing at the same moment retry at different times.
        let pauses: Vec<i64> = (1..=8).map(|id| retry_pause(id, Task::Power, 1, noon)).collect();
        assert!(pauses.iter().any(|p| *p != pauses[0]), "{pauses:?}");
        // A success ends the streak: the next read is planned from it as usual.
        s.record(1, Task::Power, at, &Outcome { ok: true, last_report_at: Some(at / 1000), ..Outcome::default() });
        assert!(s.sites[&1].failures.is_empty());
    }

    #[test]
    fn failing_power_reads_wait_for_daylight() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let late = T0 + 19 * HOUR + 59 * MINUTE; // just before the default 20:00 dusk
        let b = budget(late, 100_000);
        for task in Task::ALL {
            s.record(1, task, late, &Outcome { ok: true, last_report_at: Some(late / 1000), ..Outcome::default() });
        }
        s.record(1, Task::Power, late, &Outcome::default());
        let retry = s.next_power_all(late, &b)[&1];
        assert!(retry >= T0 + DAY + 6 * HOUR, "not retried through the night: {retry}");
    }

    /// A micro site producing 06:00–20:00 UTC that uploads every 15 minutes, planned with
    /// `per_day` hits a day for `days` days: every call made, when it was due.
    fn calls_made(per_day: u32, days: i64) -> Vec<Decision> {
        calls_made_on(micro_site(), per_day, days)
    }

    /// The calls made for one system of this profile, given `per_day` hits a day.
    fn calls_made_on(site: SiteProfile, per_day: u32, days: i64) -> Vec<Decision> {
        let mut s = Scheduler::new(vec![site]);
        let producing = |t: i64| (6 * 3600..20 * 3600).contains(&(t.rem_euclid(86_400)));
        let upload = |t_ms: i64| (t_ms / 1000).div_euclid(900) * 900;
        let mut left = per_day * 29 + 29 + RESERVE_PER_MONTH;
        let mut t = T0;
        let mut calls = Vec::new();
        while t < T0 + days * DAY {
            let d = s.next(t, &budget(t, left)).expect("budget left");
            t = d.at_ms;
            left -= s.sites[&1].profile.cost(d.task);
            let seen = upload(t);
            let mut outcome = Outcome { ok: true, last_report_at: Some(seen), power: d.power, ..Outcome::default() };
            outcome.production_w = Some(if producing(seen) { 500 } else { 0 });
            match d.task {
                Task::Power => {}
                Task::Intervals => {
                    outcome.intervals = (1..=288)
                        .map(|k| seen - k * 300)
                        .map(|end| (end, i64::from(producing(end - 1)) * 40))
                        .collect();
                }
                Task::Soc | Task::Energy | Task::Inverters => {}
            }
            calls.push(d);
            s.record(1, d.task, t, &outcome);
        }
        calls
    }

    /// A share too tight for the evening totals (five systems on Watt) still reads a metered
    /// site's totals once a week, or its grid, consumption and battery totals would never arrive;
    /// and the inverter data, or the microinverters would never be known.
    #[test]
    fn a_tight_share_still_reads_the_totals_and_the_inverters_once_a_week() {
        let metered = SiteProfile { metered: true, battery: true, ..micro_site() };
        let calls = calls_made_on(metered, 6, 22);
        for task in [Task::Energy, Task::Inverters] {
            let reads: Vec<i64> = calls.iter().filter(|d| d.task == task).map(|d| d.at_ms).collect();
            assert_eq!(reads[0], T0, "{task:?} at start: {reads:?}");
            assert_eq!(reads.len(), 4, "{task:?} then once a week: {reads:?}");
            for pair in reads[1..].windows(2) {
                assert_eq!(pair[1] - pair[0], TOTALS_EVERY_DAYS * DAY, "{task:?}: {reads:?}");
            }
            for at in &reads[1..] {
                assert!(at.rem_euclid(DAY) >= 20 * HOUR, "{task:?} after dusk: {}", at.rem_euclid(DAY) / MINUTE);
            }
        }
    }

    #[test]
    fn power_reads_average_to_the_planned_spacing() {
        // About 17 hits a day over a 14-hour window: a read every 50-odd minutes, which the
        // 15-minute uploads cannot give every time. Rounding each gap the same way would make
        // them all 60 minutes and leave hits unspent; the gaps mix 45 and 60 instead.
        let reads: Vec<i64> = calls_made(17, 4).into_iter().filter(|d| d.power).map(|d| d.at_ms).collect();
        let gaps: Vec<i64> = reads
            .windows(2)
            .filter(|w| w[0] >= T0 + DAY && (7 * HOUR..19 * HOUR).contains(&w[0].rem_euclid(DAY)))
            .filter(|w| (7 * HOUR..19 * HOUR).contains(&w[1].rem_euclid(DAY)))
            .map(|w| (w[1] - w[0]) / MINUTE)
            .collect();
        assert!(gaps.len() >= 20, "{gaps:?}");
        assert!(gaps.iter().all(|g| *g == 45 || *g == 60), "whole uploads apart: {gaps:?}");
        assert!(gaps.contains(&45) && gaps.contains(&60), "both neighbours of the plan: {gaps:?}");
        let mean = gaps.iter().sum::<i64>() as f64 / gaps.len() as f64;
        assert!((49.0..57.0).contains(&mean), "mean gap {mean:.1} min: {gaps:?}");
    }

    /// Each read shows its upload until the next, and the day's last until the production ends:
    /// the day is freshest when those stretches are equal, so the last read comes about one gap
    /// before the end, not anywhere from just before it to a whole gap early.
    #[test]
    fn the_days_last_read_comes_one_gap_before_the_production_ends() {
        for per_day in [9, 17, 32] {
            let calls = calls_made(per_day, 8);
            for day in 2..8 {
                let (from, to) = (T0 + day * DAY, T0 + (day + 1) * DAY);
                let reads: Vec<i64> =
                    calls.iter().filter(|d| d.power && (from..to).contains(&d.at_ms)).map(|d| d.at_ms).collect();
                let gaps: Vec<i64> = reads.windows(2).map(|w| w[1] - w[0]).collect();
                let mean = gaps.iter().sum::<i64>() / gaps.len() as i64;
                // The production ends at 20:00; the read is a little after its upload.
                let last = from + 20 * HOUR - reads.last().unwrap().div_euclid(15 * MINUTE) * 15 * MINUTE;
                assert!(
                    (last - mean).abs() <= 15 * MINUTE,
                    "{per_day}/day, day {day}: the last stretch {} min, the gaps {:?} min",
                    last / MINUTE,
                    gaps.iter().map(|g| g / MINUTE).collect::<Vec<_>>()
                );
            }
        }
    }

    /// On a micro-only site the interval read shows the newest power as well, so the day's last
    /// power read is the back-fill: one hit a day instead of two, and the intervals out before
    /// dusk rather than half an hour after it.
    #[test]
    fn the_days_last_power_read_takes_the_back_fill_with_it() {
        for (per_day, every) in [(32, 1), (17, 2)] {
            let calls = calls_made(per_day, 7);
            let mut days_with = 0;
            for day in 1..7 {
                let (from, to) = (T0 + day * DAY, T0 + (day + 1) * DAY);
                let today: Vec<&Decision> = calls.iter().filter(|d| (from..to).contains(&d.at_ms)).collect();
                let backfills: Vec<&&Decision> = today.iter().filter(|d| d.task == Task::Intervals).collect();
                if backfills.is_empty() {
                    continue;
                }
                days_with += 1;
                assert_eq!(backfills.len(), 1, "{per_day}/day, day {day}: one back-fill: {today:?}");
                assert!(backfills[0].power, "made as a power read, under its floor: {:?}", backfills[0]);
                let at = backfills[0].at_ms;
                assert!(
                    at <= from + 20 * HOUR + 5 * MINUTE,
                    "{per_day}/day, day {day}: by dusk (20:00), not after: {}",
                    (at - from) / MINUTE
                );
                let power_after = today.iter().filter(|d| d.task == Task::Power && d.at_ms > at).count();
                assert_eq!(power_after, 0, "{per_day}/day, day {day}: it is the day's last read: {today:?}");
                let last_power = today.iter().filter(|d| d.task == Task::Power).map(|d| d.at_ms).max().unwrap();
                assert!(at - last_power <= 2 * HOUR, "{per_day}/day, day {day}: one gap after the last power read");
            }
            assert_eq!(days_with, 6 / every, "{per_day}/day: a back-fill every {every} days");
            let start_up = calls.iter().find(|d| d.task == Task::Intervals).unwrap();
            assert!(!start_up.power, "the start-up interval read is not a power read: {start_up:?}");
        }
    }

    /// On a metered site the interval read made in place of the day's last power read costs two
    /// hits (the micros' and the consumption meter's series): it waits until both fit the minute,
    /// not just the one a power read would have needed.
    #[test]
    fn the_read_in_place_of_the_last_power_read_waits_for_room_for_all_its_hits() {
        let metered = SiteProfile { metered: true, ..micro_site() };
        assert_eq!(metered.cost(Task::Intervals), 2);
        let mut s = Scheduler::new(vec![metered]);
        let upload = |t_ms: i64| (t_ms / 1000).div_euclid(900) * 900;
        let mut t = T0;
        let mut checked = 0;
        while t < T0 + 3 * DAY {
            let b = budget(t, 5_000);
            let d = s.next(t, &b).expect("budget left");
            if d.task == Task::Intervals && d.power {
                // Nine hits a moment before: one more fits that minute, two do not.
                let busy = Budget { recent_ms: vec![d.at_ms - 1_000; 9], ..b.clone() };
                let late = s.next(t, &busy).expect("budget left");
                assert_eq!((late.task, late.power), (Task::Intervals, true), "{late:?}");
                assert!(late.at_ms >= d.at_ms - 1_000 + WINDOW, "both hits fit: {late:?} after {d:?}");
                checked += 1;
            }
            t = d.at_ms;
            let seen = upload(t);
            let producing = (6 * 3600..20 * 3600).contains(&seen.rem_euclid(86_400));
            let outcome = Outcome {
                ok: true,
                last_report_at: Some(seen),
                production_w: Some(if producing { 500 } else { 0 }),
                power: d.power,
                ..Outcome::default()
            };
            s.record(1, d.task, t, &outcome);
        }
        assert!(checked >= 2, "{checked} reads in place of the day's last power read");
    }

    /// System 1 (`first`) and a micro site, system 2, after two finished days: system 1 produces
    /// 05:00–21:00, system 2 09:00–15:00.
    fn long_and_short_days(first: SiteProfile) -> Scheduler {
        let mut s = Scheduler::new(vec![first, SiteProfile { system_id: 2, ..micro_site() }]);
        for day in 0..2 {
            for (id, from, to) in [(1, 5, 21), (2, 9, 15)] {
                let site = s.sites.get_mut(&id).unwrap();
                for h in from..=to {
                    site.daylight.observe(&site.tz, T0 / 1000 + day * 86_400 + h * 3600, 100);
                }
            }
        }
        s
    }

    #[test]
    fn a_longer_day_gets_a_larger_share() {
        let s = long_and_short_days(micro_site());
        let shares = s.shares(40.0);
        assert!((shares[&1].per_day + shares[&2].per_day - 40.0).abs() < 1e-9, "{shares:?}");
        assert!(shares[&1].per_day > 2.0 * shares[&2].per_day, "16 hours of daylight against 6: {shares:?}");
    }

    #[test]
    fn a_longer_day_buys_power_reads_not_the_totals_a_shorter_day_goes_without() {
        // A metered battery site with 16 hours of production and a micro site with 6, sharing
        // 15 hits a day: 7.5 each on equal terms, too few for the evening totals (10). The long
        // day's larger share must not buy them: both sites' reads come as far apart.
        let s = long_and_short_days(SiteProfile { metered: true, battery: true, ..micro_site() });
        let shares = s.shares(15.0);
        assert!(shares[&1].per_day >= 10.0, "the long day's share is large: {shares:?}");
        let long = DayPlan::new(&s.sites[&1], shares[&1]);
        let short = DayPlan::new(&s.sites[&2], shares[&2]);
        assert!(!long.evening_energy, "{long:?}");
        let ratio = long.power_every as f64 / short.power_every as f64;
        assert!((0.95..1.05).contains(&ratio), "reads as far apart: {long:?} {short:?}");
    }

    #[test]
    fn reads_two_hours_apart_do_not_make_the_cadence_two_hours() {
        // Uploads every 15 minutes, read every 2 hours: every gap seen is 2 hours.
        let mut u = Uploads::new(false);
        for k in 0..24 {
            u.observe(1_000_000 + k * 7200);
        }
        assert_eq!(u.cadence_secs(), 900);
        // A gateway that does upload every 2 hours: reads timed by 15 minutes find nothing.
        u.read(false);
        assert_eq!(u.cadence_secs(), 900, "one empty read can be a late upload");
        u.read(false);
        assert_eq!(u.cadence_secs(), 7200);
        // A cellular gateway's 6 hours are learned as before.
        let mut cellular = Uploads::new(true);
        for k in 0..4 {
            cellular.observe(1_000_000 + k * 6 * 3600);
        }
        assert_eq!(cellular.cadence_secs(), 6 * 3600);
    }

    #[test]
    fn a_cellular_micro_site_leaves_what_it_cannot_use_to_the_others() {
        // Uploads every 6 hours: a read after each, the interval read and a spare; no evening
        // totals, which only metered sites have.
        let cellular = SiteProfile { cellular: true, ..micro_site() };
        let s = Scheduler::new(vec![cellular, SiteProfile { system_id: 2, ..micro_site() }]);
        let shares = s.shares(20.0);
        assert!(shares[&1].per_day <= 6.0, "{shares:?}");
        assert!((shares[&1].per_day + shares[&2].per_day - 20.0).abs() < 1e-9, "{shares:?}");
    }

    #[test]
    fn a_read_whose_moment_passed_after_dusk_waits_for_the_dawn() {
        let mut s = Scheduler::new(vec![micro_site()]);
        let evening = T0 + 18 * HOUR;
        let ok = Outcome { ok: true, last_report_at: Some(evening / 1000 - 60), ..Outcome::default() };
        s.record(1, Task::Power, evening, &ok);
        // At 21:00, past the default dusk (20:00), a far larger share (a new cap, a new month)
        // puts the next read at 18:15: that moment has passed, and it is dark now.
        let late = T0 + 21 * HOUR;
        let next = s.next_power_all(late, &budget(late, 100_000))[&1];
        assert!(next >= T0 + DAY + 6 * HOUR, "read at {} min after the day began", (next - T0) / MINUTE);
    }

    #[test]
    fn what_no_system_can_use_well_is_still_shared_out() {
        // One system: its cap passes nothing to anyone, and hits left unplanned would lie unspent
        // at the month's end.
        let s = Scheduler::new(vec![SiteProfile { cellular: true, ..micro_site() }]);
        assert!((s.shares(300.0)[&1].per_day - 300.0).abs() < 1e-9);
    }
}
