//! Per-application hit quota: fixed clock-minute and UTC-calendar-month windows of simulated time.

use std::collections::VecDeque;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Datelike, NaiveDate};
use serde_json::json;

use super::SimPlan;

/// Which quota window was exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// The clock minute.
    Minute,
    /// The UTC calendar month.
    Month,
}

impl Period {
    /// `period` value of the 429 body.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Month => "month",
        }
    }

    /// Parses `minute` or `month`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "minute" => Some(Period::Minute),
            "month" => Some(Period::Month),
            _ => None,
        }
    }
}

/// A rejected hit: which window, its bounds and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exceeded {
    pub period: Period,
    pub start: i64,
    pub end: i64,
    pub limit: u64,
}

/// Hit counters of the current windows.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    minute_start: i64,
    minute_count: u64,
    month_start: i64,
    month_count: u64,
    forced: VecDeque<Period>,
}

impl Ledger {
    /// Counts one hit at simulated time `now` and says whether it is over the plan's limits.
    /// Every hit counts, including the ones rejected here.
    pub(crate) fn record(&mut self, now: i64, plan: SimPlan) -> Option<Exceeded> {
        let minute = window_bounds(Period::Minute, now);
        let month = window_bounds(Period::Month, now);
        if self.minute_start != minute.0 {
            self.minute_start = minute.0;
            self.minute_count = 0;
        }
        if self.month_start != month.0 {
            self.month_start = month.0;
            self.month_count = 0;
        }
        self.minute_count += 1;
        self.month_count += 1;

        let exceeded = |period: Period, (start, end): (i64, i64)| Exceeded {
            period,
            start,
            end,
            limit: match period {
                Period::Minute => plan.per_minute(),
                Period::Month => plan.per_month(),
            },
        };
        if let Some(period) = self.forced.pop_front() {
            return Some(exceeded(period, window_bounds(period, now)));
        }
        // The month is reported first: waiting for the next minute would not help.
        if self.month_count > plan.per_month() {
            return Some(exceeded(Period::Month, month));
        }
        if self.minute_count > plan.per_minute() {
            return Some(exceeded(Period::Minute, minute));
        }
        None
    }

    /// Makes the next `count` hits fail with a 429 of `period`.
    pub(crate) fn force(&mut self, period: Period, count: usize) {
        self.forced.clear();
        self.forced.extend(std::iter::repeat_n(period, count));
    }

    /// Counters for `/admin/state`.
    pub(crate) fn state(&self) -> serde_json::Value {
        json!({
            "minute_start": self.minute_start,
            "minute_count": self.minute_count,
            "month_start": self.month_start,
            "month_count": self.month_count,
            "forced_429": self.forced.len(),
        })
    }
}

/// Start and end (epoch seconds) of the window of `period` containing `now`.
pub(crate) fn window_bounds(period: Period, now: i64) -> (i64, i64) {
    match period {
        Period::Minute => {
            let start = now.div_euclid(60) * 60;
            (start, start + 60)
        }
        Period::Month => {
            let date = DateTime::from_timestamp(now, 0).map(|t| t.date_naive()).unwrap_or_default();
            let first = NaiveDate::from_ymd_opt(date.year(), date.month(), 1).unwrap_or(date);
            let next = first.checked_add_months(chrono::Months::new(1)).unwrap_or(first);
            let secs = |d: NaiveDate| d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
            (secs(first), secs(next))
        }
    }
}

/// The 429 body of `error_429.json` / `error_429_month.json`.
pub(crate) fn too_many_requests(plan: SimPlan, ex: Exceeded) -> Response {
    let body = json!({
        "message": "Too Many Requests",
        "details": format!("Usage limit exceeded for plan {plan}"),
        "code": 429,
        "period": ex.period.as_str(),
        "period_start": ex.start,
        "period_end": ex.end,
        "limit": ex.limit,
    });
    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watt_allows_ten_a_minute_then_resets_on_the_clock_minute() {
        let mut ledger = Ledger::default();
        let t = 1_750_101_420; // a whole minute
        for i in 0..10 {
            assert_eq!(ledger.record(t + i, SimPlan::Watt), None, "hit {i}");
        }
        let ex = ledger.record(t + 30, SimPlan::Watt).expect("11th hit rejected");
        assert_eq!((ex.period, ex.start, ex.end, ex.limit), (Period::Minute, t, t + 60, 10));
        assert_eq!(ledger.record(t + 60, SimPlan::Watt), None, "a new minute starts from zero");
    }

    #[test]
    fn month_window_is_the_utc_calendar_month() {
        // 2025-06-16 → June 2025, as in error_429_month.json.
        assert_eq!(window_bounds(Period::Month, 1_750_101_420), (1_748_736_000, 1_751_328_000));
        let mut ledger = Ledger::default();
        let mut t = 1_748_736_000;
        for _ in 0..1_000 {
            assert!(ledger.record(t, SimPlan::Watt).is_none());
            t += 61;
        }
        let ex = ledger.record(t + 61, SimPlan::Watt).expect("1001st hit of the month");
        assert_eq!((ex.period, ex.limit), (Period::Month, 1_000));
    }

    #[test]
    fn forced_429s_come_first() {
        let mut ledger = Ledger::default();
        ledger.force(Period::Month, 2);
        assert_eq!(ledger.record(0, SimPlan::Partner).map(|e| e.period), Some(Period::Month));
        assert!(ledger.record(0, SimPlan::Partner).is_some());
        assert!(ledger.record(0, SimPlan::Partner).is_none());
    }
}
