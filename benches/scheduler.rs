//! Month simulation: the scheduler against the simulator's model with a simulated clock, side by
//! side with a fixed-interval poller that spends the same number of hits.
//!
//! `cargo bench --bench scheduler` prints one row per scenario, ending with `ratio=X.XX`
//! (the fixed poller's mean age of the displayed production power in daylight, divided by ours)
//! and `breaches=N` (hits that would have passed a limit in any 60-second window or the month).

use std::collections::{BTreeMap, VecDeque};
use std::sync::OnceLock;
use std::time::Instant;

use enphase_mqtt::scheduler::{Budget, Outcome, Scheduler, SiteProfile, Task};
use enphase_mqtt::simulator::model::{Fleet, SimSystem};

/// 2026-06-01T00:00:00Z: a month with long days in the north and short ones in the south.
const JUNE: i64 = 1_780_272_000;

/// The first second of the simulated month: June 2026, or `SCHEDULER_BENCH_MONTH` (`YYYY-MM`).
fn month_start() -> i64 {
    static START: OnceLock<i64> = OnceLock::new();
    *START.get_or_init(|| {
        let Ok(month) = std::env::var("SCHEDULER_BENCH_MONTH") else { return JUNE };
        match chrono::NaiveDate::parse_from_str(&format!("{month}-01"), "%Y-%m-%d") {
            Ok(day) => day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc().timestamp(),
            Err(_) => {
                eprintln!("SCHEDULER_BENCH_MONTH: {month:?} is not a month like 2026-12");
                std::process::exit(2);
            }
        }
    })
}

/// 30 days.
const MONTH_SECS: i64 = 30 * 86_400;
const MINUTE_MS: i64 = 60_000;

struct Scenario {
    systems: usize,
    plan: &'static str,
    per_minute: u32,
    per_month: u32,
}

/// The hits sent, for checking both kinds of window.
#[derive(Default)]
struct Hits {
    sent: Vec<i64>,
    recent: VecDeque<i64>,
    breaches: u32,
}

impl Hits {
    /// Records `n` hits at `t_ms`; counts those past a limit.
    fn send(&mut self, t_ms: i64, n: u32, per_minute: u32, per_month: u32) {
        for _ in 0..n {
            while self.recent.front().is_some_and(|t| *t <= t_ms - MINUTE_MS) {
                self.recent.pop_front();
            }
            if self.recent.len() as u32 >= per_minute || self.sent.len() as u32 >= per_month {
                self.breaches += 1;
            }
            self.recent.push_back(t_ms);
            self.sent.push(t_ms);
        }
    }

    /// When the next hit may go (sliding minute window).
    fn next_free(&self, now_ms: i64, per_minute: u32) -> i64 {
        let in_window: Vec<i64> = self.recent.iter().copied().filter(|t| *t > now_ms - MINUTE_MS).collect();
        if (in_window.len() as u32) < per_minute {
            now_ms
        } else {
            in_window[in_window.len() - per_minute as usize] + MINUTE_MS
        }
    }

    /// Hits in a clock minute above the limit: what Enphase would answer with 429.
    fn clock_minute_429s(&self, per_minute: u32) -> u32 {
        let mut per: BTreeMap<i64, u32> = BTreeMap::new();
        for t in &self.sent {
            *per.entry(t.div_euclid(MINUTE_MS)).or_default() += 1;
        }
        per.values().map(|n| n.saturating_sub(per_minute)).sum()
    }
}

/// Daylight of each system: (start, end) epoch seconds of production, per day of the month.
fn daylight(sys: &SimSystem) -> Vec<(i64, i64)> {
    // The model answers at most nine days at a time, as the API does: ask a week at a time.
    let (from, to) = (month_start() - 86_400, month_start() + MONTH_SECS + 86_400);
    let buckets = (0..)
        .map(|k| from + k * 7 * 86_400)
        .take_while(|a| *a < to)
        .flat_map(|a| sys.micro_buckets(a, (a + 7 * 86_400).min(to)));
    let mut days: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for b in buckets.filter(|b| b.powr > 0) {
        let day = sys.midnight(sys.local_date(b.end - 1));
        let e = days.entry(day).or_insert((b.end - 300, b.end));
        e.0 = e.0.min(b.end - 300);
        e.1 = e.1.max(b.end);
    }
    days.into_values().collect()
}

/// What a run of one poller gave.
#[derive(Default)]
struct Result {
    hits: u32,
    breaches: u32,
    http_429: u32,
    power_polls: u64,
    empty_polls: u64,
    age_sum_secs: f64,
    age_samples: u64,
    /// Per system: (sum of ages, samples).
    per_system: BTreeMap<usize, (f64, u64)>,
    /// Per system: power reads.
    reads: BTreeMap<usize, u64>,
}

impl Result {
    fn mean_age_min(&self) -> f64 {
        if self.age_samples == 0 { f64::NAN } else { self.age_sum_secs / self.age_samples as f64 / 60.0 }
    }
}

/// Mean age of the displayed production power, sampled each minute of daylight.
struct Ages {
    daylight: Vec<Vec<(i64, i64)>>,
}

impl Ages {
    /// Adds the samples in `[from, to)` seconds for system `i`, whose display shows data of `shown`.
    fn sample(&self, i: usize, from: i64, to: i64, shown: Option<i64>, out: &mut Result) {
        let Some(shown) = shown else { return };
        for &(a, b) in &self.daylight[i] {
            let lo = a.max(from);
            let hi = b.min(to);
            let mut t = lo + (60 - lo.rem_euclid(60)) % 60;
            while t < hi {
                out.age_sum_secs += (t - shown) as f64;
                out.age_samples += 1;
                let e = out.per_system.entry(i).or_default();
                e.0 += (t - shown) as f64;
                e.1 += 1;
                t += 60;
            }
        }
    }
}

/// What each system's display shows: the upload its newest power read found, and since when.
struct Shown {
    upload: Vec<Option<i64>>,
    since: Vec<i64>,
}

impl Shown {
    fn new(systems: usize) -> Self {
        Self { upload: vec![None; systems], since: vec![month_start(); systems] }
    }

    /// A power read of system `i` at `t` (epoch seconds) found `upload`.
    fn read(&mut self, i: usize, t: i64, upload: i64, ages: &Ages, out: &mut Result) {
        out.power_polls += 1;
        *out.reads.entry(i).or_default() += 1;
        if self.upload[i] == Some(upload) {
            out.empty_polls += 1;
        }
        ages.sample(i, self.since[i], t, self.upload[i], out);
        self.upload[i] = Some(upload);
        self.since[i] = t;
    }

    /// The ages from each system's last read to the month's end.
    fn finish(&self, ages: &Ages, out: &mut Result) {
        for i in 0..self.upload.len() {
            ages.sample(i, self.since[i], month_start() + MONTH_SECS, self.upload[i], out);
        }
    }
}

/// What the scheduler is told of each system; on plans with device-level data the inverter read
/// includes a page of micro telemetry per 20 micros.
fn profiles(fleet: &Fleet, device_level: bool) -> Vec<SiteProfile> {
    fleet
        .systems()
        .iter()
        .map(|s| SiteProfile {
            system_id: s.system_id(),
            timezone: Some(s.timezone().to_string()),
            metered: s.has_meters(),
            battery: s.has_battery(),
            cellular: s.is_cellular(),
            micro_pages: if device_level { (s.micros().len() as u32).div_ceil(20) } else { 0 },
        })
        .collect()
}

fn run_ours(fleet: &Fleet, sc: &Scenario, ages: &Ages) -> Result {
    let profiles = profiles(fleet, sc.plan != "watt");
    let index: BTreeMap<u64, usize> = profiles.iter().enumerate().map(|(i, p)| (p.system_id, i)).collect();
    let mut sched = Scheduler::new(profiles.clone());
    let mut hits = Hits::default();
    let mut shown = Shown::new(profiles.len());
    let mut res = Result::default();
    let month_end_ms = (month_start() + MONTH_SECS) * 1000;
    let mut now = month_start() * 1000;
    // One token refresh a day, as the bridge does.
    let mut next_refresh = now;
    loop {
        if now >= next_refresh {
            let at = hits.next_free(now, sc.per_minute);
            hits.send(at, 1, sc.per_minute, sc.per_month);
            next_refresh += 86_400_000;
        }
        let budget = Budget {
            month_left: sc.per_month.saturating_sub(hits.sent.len() as u32),
            next_free_ms: now,
            month_end_ms,
            minute_limit: sc.per_minute,
            recent_ms: hits.recent.iter().copied().filter(|t| *t > now - MINUTE_MS).collect(),
        };
        let Some(d) = sched.next(now, &budget) else { break };
        let at = d.at_ms.min(next_refresh);
        if at >= month_end_ms {
            break;
        }
        if at < d.at_ms {
            // The token refresh comes first; plan again afterwards.
            now = at;
            continue;
        }
        now = d.at_ms;
        let i = index[&d.system_id];
        let p = &profiles[i];
        let sys = &fleet.systems()[i];
        hits.send(now, p.cost(d.task), sc.per_minute, sc.per_month);
        let t = now / 1000;
        let snap = sys.snapshot(t);
        let mut outcome = Outcome {
            ok: true,
            last_report_at: Some(snap.last_report_at),
            production_w: Some(snap.current_power_w),
            intervals: Vec::new(),
            power: d.power,
        };
        if d.task == Task::Intervals {
            outcome.intervals =
                sys.micro_buckets(t - 86_400, snap.last_report_at).iter().map(|b| (b.end, b.enwh)).collect();
        }
        // A power read, or the interval read made in place of the day's last one: it shows the
        // newest power too (the micros' newest bucket).
        if d.power {
            shown.read(i, t, snap.last_report_at, ages, &mut res);
        }
        sched.record(d.system_id, d.task, now, &outcome);
    }
    shown.finish(ages, &mut res);
    res.hits = hits.sent.len() as u32;
    res.breaches = hits.breaches;
    res.http_429 = hits.clock_minute_429s(sc.per_minute);
    res
}

/// Polls every system round-robin at one fixed interval, spending `budget` hits in the month.
fn run_fixed(fleet: &Fleet, sc: &Scenario, ages: &Ages, budget: u32) -> Result {
    let n = fleet.len();
    let mut hits = Hits::default();
    let mut res = Result::default();
    let polls = budget.saturating_sub(30).max(1) as i64; // the same daily token refresh
    let step_ms = MONTH_SECS * 1000 / polls;
    let mut shown = Shown::new(n);
    for k in 0..polls {
        let now = month_start() * 1000 + k * step_ms;
        if k % (polls / 30).max(1) == 0 {
            hits.send(now, 1, sc.per_minute, sc.per_month);
        }
        let i = (k as usize) % n;
        hits.send(now, 1, sc.per_minute, sc.per_month);
        let t = now / 1000;
        shown.read(i, t, fleet.systems()[i].snapshot(t).last_report_at, ages, &mut res);
    }
    shown.finish(ages, &mut res);
    res.hits = hits.sent.len() as u32;
    res.breaches = hits.breaches;
    res.http_429 = hits.clock_minute_429s(sc.per_minute);
    res
}

/// The least mean age any poller could reach with `reads` power reads in the month, knowing every
/// upload and every day's daylight in advance: a bound to read the other figures against.
///
/// For each system and day, the best `k` reads are found exactly (dynamic programming over the
/// day's uploads, the first being the last upload before the production starts: any later first
/// read leaves the night's stale value on show), and so is the best split of the month's reads
/// over the days.
fn ideal(fleet: &Fleet, ages: &Ages, reads: u64) -> f64 {
    // Per system and day: the least sum of age (seconds × seconds) for 1, 2, … reads.
    let mut days: Vec<Vec<f64>> = Vec::new();
    let mut span = 0.0;
    for (i, sys) in fleet.systems().iter().enumerate() {
        let period = if sys.is_cellular() { 6 * 3600 } else { 900 };
        for &(a, b) in &ages.daylight[i] {
            let (a, b) = (a.max(month_start()), b.min(month_start() + MONTH_SECS));
            if b <= a {
                continue;
            }
            span += (b - a) as f64;
            let first = sys.last_upload_at(a);
            let c: Vec<f64> = (0..).map(|k| first + k * period).take_while(|u| *u < b).map(|u| u as f64).collect();
            // Age summed over [from, to) while the read of the upload at `at` is shown.
            let seg = |at: f64, to: f64| {
                let from = at.max(a as f64);
                ((to - at).powi(2) - (from - at).powi(2)) / 2.0
            };
            let m = c.len();
            // g[j]: least age over [a, c[j]) with the reads so far, the newest at c[j].
            let mut g: Vec<f64> = vec![f64::INFINITY; m];
            g[0] = 0.0;
            let mut best = vec![seg(c[0], b as f64)];
            for _k in 2..=m {
                let mut next = vec![f64::INFINITY; m];
                for j in 1..m {
                    for i in 0..j {
                        if g[i].is_finite() {
                            next[j] = next[j].min(g[i] + seg(c[i], c[j]));
                        }
                    }
                }
                g = next;
                let f = (0..m)
                    .filter(|j| g[*j].is_finite())
                    .map(|j| g[j] + seg(c[j], b as f64))
                    .fold(f64::INFINITY, f64::min);
                best.push(f);
            }
            days.push(best);
        }
    }
    // Every day gets its first read; the rest are shared out exactly: `least[r]` is the least total
    // over the days so far with `r` reads beyond the first of each day.
    let extra = reads.saturating_sub(days.len() as u64) as usize;
    let mut least = vec![0.0_f64; extra + 1];
    for day in &days {
        let mut next = vec![f64::INFINITY; extra + 1];
        for (r, slot) in next.iter_mut().enumerate() {
            for (k, cost) in day.iter().enumerate().take(r + 1) {
                *slot = slot.min(least[r - k] + cost);
            }
        }
        least = next;
    }
    let total = least.iter().copied().fold(f64::INFINITY, f64::min);
    total / span / 60.0
}

fn main() {
    let scenarios = [
        Scenario { systems: 1, plan: "watt", per_minute: 10, per_month: 1_000 },
        Scenario { systems: 2, plan: "watt", per_minute: 10, per_month: 1_000 },
        Scenario { systems: 5, plan: "watt", per_minute: 10, per_month: 1_000 },
        Scenario { systems: 1, plan: "kilowatt", per_minute: 50, per_month: 50_000 },
    ];
    println!(
        "month simulation: 30 days from {}, simulated clock; ages are of the displayed production power in daylight",
        chrono::DateTime::from_timestamp(month_start(), 0).map_or_else(String::new, |d| d.date_naive().to_string())
    );
    for sc in &scenarios {
        let started = Instant::now();
        let fleet = Fleet::generate(sc.systems, 1, month_start());
        let ages = Ages { daylight: fleet.systems().iter().map(daylight).collect() };
        let ours = run_ours(&fleet, sc, &ages);
        let fixed = run_fixed(&fleet, sc, &ages, ours.hits);
        let ratio = fixed.mean_age_min() / ours.mean_age_min();
        let ideal_same = ideal(&fleet, &ages, ours.power_polls);
        let ideal_all = ideal(&fleet, &ages, u64::from(fixed.hits).saturating_sub(30));
        let pct = |r: &Result| 100.0 * (r.power_polls - r.empty_polls) as f64 / r.power_polls.max(1) as f64;
        println!(
            "systems={} plan={:<8} hits={:>5} 429s={} new_data={:>5.1}% ({} of {} polls empty) age_ours={:>6.1}min | fixed: hits={:>5} 429s={} new_data={:>5.1}% age_fixed={:>6.1}min | {:.1}s ratio={:.2} breaches={}",
            sc.systems,
            sc.plan,
            ours.hits,
            ours.http_429,
            pct(&ours),
            ours.empty_polls,
            ours.power_polls,
            ours.mean_age_min(),
            fixed.hits,
            fixed.http_429,
            pct(&fixed),
            fixed.mean_age_min(),
            started.elapsed().as_secs_f64(),
            ratio,
            ours.breaches
        );
        println!(
            "  bound: the same {} power reads placed with hindsight {:.1}min (ratio {:.2}); every hit but the token refreshes a power read, with hindsight {:.1}min (ratio {:.2})",
            ours.power_polls,
            ideal_same,
            fixed.mean_age_min() / ideal_same,
            ideal_all,
            fixed.mean_age_min() / ideal_all
        );
        if std::env::var_os("SCHEDULER_BENCH_DETAIL").is_some() {
            for (i, sys) in fleet.systems().iter().enumerate() {
                let age = |r: &Result| r.per_system.get(&i).map_or(f64::NAN, |(s, n)| s / *n as f64 / 60.0);
                println!(
                    "  system {} {:<20} {:?} cellular={} ours={:.1}min ({} reads) fixed={:.1}min ({} reads)",
                    sys.system_id(),
                    sys.timezone(),
                    sys.kind(),
                    sys.is_cellular(),
                    age(&ours),
                    ours.reads.get(&i).copied().unwrap_or(0),
                    age(&fixed),
                    fixed.reads.get(&i).copied().unwrap_or(0)
                );
            }
        }
    }
}
