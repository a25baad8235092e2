//! Time zones: the IANA zone each system reports (`timezone`), and the local-time arithmetic on
//! epoch seconds that the scheduler, the daily counters and the simulator need.
//!
//! The tz database is bundled into the binary, so a container without `/usr/share/zoneinfo`
//! behaves like any other machine. It is kept as compact TZif bytes, and only the zones in use are
//! parsed. (A table of every zone's transitions compiled into the binary, the other common way,
//! holds some 67,000 pointers: the loader rewrites about a megabyte of it at every start, and that
//! memory stays resident.)

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Timelike};

/// A time zone of the bundled database (cheap to clone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    tz: jiff::tz::TimeZone,
    /// Its standard offset from UTC, seconds: the lesser of its offsets in January and July 2026.
    /// One fixed offset whatever the date, so that what is counted in it (the daylight window)
    /// never moves with the clocks; the 2026 rules keep those seconds close to the local day's.
    standard: i64,
}

/// 2026-01-01 and 2026-07-01, 00:00 UTC: where a zone's standard offset is read.
const STANDARD_AT: [i64; 2] = [1_767_225_600, 1_782_864_000];

impl Zone {
    /// The zone of this IANA name (`America/Los_Angeles`), if the database knows it.
    pub fn named(name: &str) -> Option<Zone> {
        jiff::tz::TimeZone::get(name).ok().map(Zone::new)
    }

    /// Coordinated Universal Time.
    pub fn utc() -> Zone {
        Zone::new(jiff::tz::TimeZone::UTC)
    }

    fn new(tz: jiff::tz::TimeZone) -> Zone {
        let mut zone = Zone { tz, standard: 0 };
        zone.standard = STANDARD_AT.iter().map(|t| zone.offset_secs(*t)).min().unwrap_or(0);
        zone
    }

    /// The IANA name.
    pub fn name(&self) -> &str {
        self.tz.iana_name().unwrap_or("UTC")
    }

    /// The offset from UTC in seconds at epoch second `t` (daylight saving time included).
    pub fn offset_secs(&self, t: i64) -> i64 {
        jiff::Timestamp::from_second(t).map_or(0, |ts| i64::from(self.tz.to_offset(ts).seconds()))
    }

    /// How far the clocks are put forward at epoch second `t` for daylight saving time: the
    /// offset less the zone's standard offset; 0 outside daylight saving time, negative where the
    /// clocks go back for a while (Morocco during Ramadan).
    pub fn dst_shift_secs(&self, t: i64) -> i64 {
        self.offset_secs(t) - self.standard
    }

    /// Epoch second at which local `date` begins in the zone's standard time, whatever the clocks
    /// say that day: the instant `s` seconds of that day in standard time is this plus `s`.
    pub fn standard_midnight(&self, date: NaiveDate) -> i64 {
        date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp() - self.standard
    }

    /// The standard-time midnight (epoch second) of the day that holds epoch second `t` in
    /// standard time; no look-up in the zone's rules.
    pub fn standard_day_start(&self, t: i64) -> i64 {
        (t + self.standard).div_euclid(86_400) * 86_400 - self.standard
    }

    /// Local date and time at epoch second `t`.
    pub fn local(&self, t: i64) -> NaiveDateTime {
        DateTime::from_timestamp(t.saturating_add(self.offset_secs(t)), 0).unwrap_or_default().naive_utc()
    }

    /// Local date at epoch second `t`.
    pub fn local_date(&self, t: i64) -> NaiveDate {
        self.local(t).date()
    }

    /// Seconds since local midnight (wall-clock) at epoch second `t`.
    pub fn seconds_from_midnight(&self, t: i64) -> i64 {
        i64::from(self.local(t).num_seconds_from_midnight())
    }

    /// Epoch second at which local `date` begins: its midnight, or the moment the clocks jump when
    /// a daylight-saving change skips midnight.
    pub fn midnight(&self, date: NaiveDate) -> i64 {
        let start = i8::try_from(date.month())
            .ok()
            .zip(i8::try_from(date.day()).ok())
            .and_then(|(m, d)| jiff::civil::Date::new(i16::try_from(date.year()).ok()?, m, d).ok())
            .and_then(|d| d.to_zoned_datetime(self.tz.clone()).ok())
            .and_then(|z| z.start_of_day().ok());
        match start {
            Some(z) => z.timestamp().as_second(),
            // Outside jiff's range (years beyond ±9999): the UTC midnight, offset as now.
            None => {
                let naive = date.and_time(chrono::NaiveTime::MIN).and_utc().timestamp();
                naive - self.offset_secs(naive)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("date")
    }

    #[test]
    fn names_resolve_and_unknown_ones_do_not() {
        assert_eq!(Zone::named("Australia/Sydney").expect("known").name(), "Australia/Sydney");
        assert!(Zone::named("Mars/Olympus_Mons").is_none());
        assert_eq!(Zone::utc().offset_secs(1_780_000_000), 0);
    }

    #[test]
    fn offsets_follow_daylight_saving_time() {
        let berlin = Zone::named("Europe/Berlin").expect("known");
        // 2026-01-15 12:00 UTC and 2026-07-15 12:00 UTC.
        assert_eq!(berlin.offset_secs(1_768_478_400), 3_600);
        assert_eq!(berlin.offset_secs(1_784_116_800), 7_200);
        assert_eq!(berlin.local(1_784_116_800).to_string(), "2026-07-15 14:00:00");
        assert_eq!(berlin.seconds_from_midnight(1_784_116_800), 14 * 3_600);
        // Sydney is a day ahead of UTC in the evening (UTC).
        let sydney = Zone::named("Australia/Sydney").expect("known");
        assert_eq!(sydney.local_date(1_784_116_800 + 9 * 3_600), date(2026, 7, 16));
    }

    #[test]
    fn the_daylight_saving_shift_is_counted_from_standard_time_in_both_hemispheres() {
        // 2026-01-15 and 2026-07-15, 12:00 UTC.
        let (january, july) = (1_768_478_400, 1_784_116_800);
        let berlin = Zone::named("Europe/Berlin").expect("known");
        assert_eq!((berlin.dst_shift_secs(january), berlin.dst_shift_secs(july)), (0, 3_600));
        let sydney = Zone::named("Australia/Sydney").expect("known");
        assert_eq!((sydney.dst_shift_secs(january), sydney.dst_shift_secs(july)), (3_600, 0));
        let brisbane = Zone::named("Australia/Brisbane").expect("known");
        assert_eq!((brisbane.dst_shift_secs(january), brisbane.dst_shift_secs(july)), (0, 0));
        assert_eq!(Zone::utc().dst_shift_secs(july), 0);
        // Morocco keeps +01 and puts its clocks back an hour for Ramadan (2026-03-01 12:00 UTC).
        let casablanca = Zone::named("Africa/Casablanca").expect("known");
        assert_eq!((casablanca.dst_shift_secs(1_772_366_400), casablanca.dst_shift_secs(july)), (-3_600, 0));
        let date = NaiveDate::from_ymd_opt(2026, 3, 1).expect("date");
        assert_eq!(casablanca.standard_midnight(date), casablanca.midnight(date) - 3_600);
        // The day found from an instant is the one found from its date, on a day of a change too.
        let los_angeles = Zone::named("America/Los_Angeles").expect("known");
        for (zone, day) in [(&casablanca, date), (&los_angeles, NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"))] {
            let noon = zone.midnight(day) + 12 * 3_600;
            assert_eq!(zone.standard_day_start(noon), zone.standard_midnight(day), "{day}");
        }
    }

    #[test]
    fn midnight_handles_dst_days() {
        let berlin = Zone::named("Europe/Berlin").expect("known");
        let spring = date(2025, 3, 30);
        let next = spring.succ_opt().expect("date");
        assert_eq!(berlin.midnight(next) - berlin.midnight(spring), 23 * 3_600);
        assert_eq!(berlin.local_date(berlin.midnight(spring)), spring);
        assert_eq!(berlin.seconds_from_midnight(berlin.midnight(spring)), 0);
        // Santiago skips midnight when it moves to summer time (2025-09-07 00:00 → 01:00).
        let santiago = Zone::named("America/Santiago").expect("known");
        let day = date(2025, 9, 7);
        let start = santiago.midnight(day);
        assert_eq!(santiago.local(start).to_string(), "2025-09-07 01:00:00");
        assert_eq!(santiago.local_date(start - 1), date(2025, 9, 6));
    }
}
