//! The hit ledger: every request to the Enphase host is counted per minute and per UTC calendar
//! month, persisted in `state_dir`, and a call that would pass a limit is refused before it is sent.
//!
//! The per-minute limit holds over any 60-second window (our clock and Enphase's differ, so clock
//! minutes are not enough). Enphase counts a hit when it arrives, which is some time after we send
//! it and before its answer is back: so a hit counts in our window from its answer (and, while it
//! is unanswered, as if answered now), and the next hit is sent after that. However slow the
//! network, two hits a window apart here are then at least as far apart there.
//!
//! The ledger file is shared by every process using the same `state_dir` (`run`, `auth code`, …):
//! each change is a read-modify-write under a file lock.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chrono::{DateTime, Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::{Millis, SharedClock};
use crate::enlighten::error::{ApiError, RatePeriod};
use crate::fsutil::{self, FileLock};

/// A minute: how long to wait after a 429 that gave no `period_end`.
pub const MINUTE_MS: i64 = 60_000;
/// How long a hit counts against the per-minute limit from its answer: a minute, and a second
/// more, as Enphase's clock may count in whole seconds and run a little apart from ours.
pub const WINDOW_MS: i64 = 61_000;
/// The longest block a 429 can set: a quota month and a day (Enphase's windows end at the
/// latest at the next month's start).
const MAX_BLOCK_MS: i64 = 32 * 86_400_000;
/// The longest request timeout a hit is given (the config allows 600 s).
const MAX_SENDING_MS: i64 = 10 * 60_000;
/// How much longer than its request's timeout a hit may be on its way: its request starts after
/// the ledger is written (a wait for the file lock, two syncs to disk), and an answer recorded
/// after the hit was taken for dead would be lost.
const SENDING_SLACK_MS: i64 = WINDOW_MS;

/// What is kept on disk.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LedgerState {
    /// The UTC month counted, `YYYY-MM`.
    pub month: String,
    /// Hits sent in that month.
    pub month_hits: u32,
    /// When each answered hit of the last 60 seconds was answered, oldest first.
    pub recent_ms: VecDeque<Millis>,
    /// Hits sent and not answered yet.
    #[serde(default)]
    pub sending: Vec<Sending>,
    /// After a 429: nothing is sent before this instant.
    pub blocked_until_ms: Option<Millis>,
    /// Which limit the 429 was for.
    pub blocked_period: Option<RatePeriod>,
    /// Hits ever counted by this ledger (for metrics).
    #[serde(default)]
    pub total_hits: u64,
}

/// A hit on its way: it counts in the window as if answered now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sending {
    /// Which hit: unique among the processes sharing the ledger.
    #[serde(default)]
    pub id: u64,
    /// When it was sent.
    pub sent_ms: Millis,
    /// When its request times out: a hit still here then (its process died before the answer)
    /// counts as answered at this instant.
    pub until_ms: Millis,
}

/// A hit being sent, from [`Ledger::reserve`]: dropping it (once the answer is in, or the request
/// has failed or been abandoned) records the hit as answered now.
#[must_use = "the hit counts as unanswered until this is dropped"]
#[derive(Debug)]
pub struct Hit<'a> {
    ledger: &'a Ledger,
    id: u64,
}

impl Drop for Hit<'_> {
    fn drop(&mut self) {
        self.ledger.answered(self.id);
    }
}

/// A hit id no other process sharing the ledger makes: the process id, and a count of its hits.
fn next_hit_id() -> u64 {
    static COUNT: AtomicU64 = AtomicU64::new(1);
    (u64::from(std::process::id()) << 32) | (COUNT.fetch_add(1, Ordering::Relaxed) & 0xFFFF_FFFF)
}

/// A read-only view of the ledger for status pages, `bridge/info` and the scheduler.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LedgerSnapshot {
    /// Hits used in the current UTC month.
    pub month_used: u32,
    /// The month's limit in force.
    pub month_limit: u32,
    /// Hits in the last 60 seconds, counting those on their way.
    pub minute_used: u32,
    /// The per-minute limit in force.
    pub minute_limit: u32,
    /// Earliest instant the next hit may be sent (now, or later when a limit is reached).
    pub next_free_ms: Millis,
    /// When each hit of the last 60 seconds counts from (its answer; now for those on their
    /// way), oldest first.
    pub recent_ms: Vec<Millis>,
}

impl LedgerSnapshot {
    /// Hits left this month.
    pub fn month_left(&self) -> u32 {
        self.month_limit.saturating_sub(self.month_used)
    }
}

/// The persisted hit counter.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    lock_path: PathBuf,
    minute_limit: u32,
    month_limit: u32,
    clock: SharedClock,
    /// The last state read or written, for cheap snapshots.
    cached: Mutex<LedgerState>,
    /// Whether the damaged file was already logged (set again only by a good read), so that a
    /// damaged file is said once, not at every read until it is next written.
    said_damaged: AtomicBool,
}

impl Ledger {
    /// Opens (or starts) the ledger in `state_dir` with the limits in force.
    pub fn open(state_dir: &Path, minute_limit: u32, month_limit: u32, clock: SharedClock) -> io::Result<Self> {
        fsutil::ensure_private_dir(state_dir)?;
        let ledger = Self {
            path: state_dir.join("ledger.json"),
            lock_path: state_dir.join("ledger.lock"),
            minute_limit: minute_limit.max(1),
            month_limit,
            clock,
            cached: Mutex::new(LedgerState::default()),
            said_damaged: AtomicBool::new(false),
        };
        let state = ledger
            .read()
            .map_err(|err| io::Error::new(err.kind(), format!("hit ledger {}: {err}", ledger.path.display())))?;
        *ledger.cached.lock().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(ledger)
    }

    /// Counts one hit now, or refuses it with [`ApiError::BudgetExhausted`] if it would pass a limit
    /// or Enphase told us to wait. Call right before sending, and keep the [`Hit`] until the answer
    /// is in; `answer_within` is the request's timeout.
    pub fn reserve(&self, answer_within: std::time::Duration) -> Result<Hit<'_>, ApiError> {
        let now = self.clock.now_ms();
        let within = i64::try_from(answer_within.as_millis()).unwrap_or(MAX_SENDING_MS).min(MAX_SENDING_MS);
        let id = next_hit_id();
        self.update(|state| {
            let free = next_free(state, now, self.minute_limit, self.month_limit);
            if let Some((period, until_ms)) = free {
                return Err(ApiError::BudgetExhausted { period, until_ms });
            }
            state.month_hits += 1;
            state.total_hits += 1;
            // Timed from now, under the lock (the wait for it may have been long).
            let sent_ms = self.clock.now_ms().max(now);
            state.sending.push(Sending { id, sent_ms, until_ms: sent_ms + within + SENDING_SLACK_MS });
            Ok(())
        })?;
        Ok(Hit { ledger: self, id })
    }

    /// Hit `id` has its answer (or failed): it counts from now.
    fn answered(&self, id: u64) {
        let now = self.clock.now_ms();
        let result = self.update(|state| {
            // None when it was already taken for dead (see `roll`).
            if let Some(i) = state.sending.iter().position(|s| s.id == id) {
                state.sending.remove(i);
                insert_sorted(&mut state.recent_ms, now);
            }
            Ok(())
        });
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not record an answered hit in the ledger");
        }
    }

    /// Records a 429 from Enphase: nothing is sent until `period_end` (epoch seconds), or for a
    /// minute (or until the next UTC month) when Enphase did not say.
    pub fn note_rate_limited(&self, period: Option<RatePeriod>, period_end: Option<i64>) {
        let now = self.clock.now_ms();
        let period = period.unwrap_or(RatePeriod::Minute);
        let until = match (period, period_end) {
            (_, Some(end)) if end.saturating_mul(1000) > now => end.saturating_mul(1000),
            (RatePeriod::Month, _) => next_month_start_ms(now),
            (RatePeriod::Minute, _) => now + MINUTE_MS,
        };
        // Enphase's answer, bounded: no quota window is longer than a month.
        let until = until.min(now.saturating_add(MAX_BLOCK_MS));
        let result = self.update(|state| {
            if period == RatePeriod::Month {
                // Enphase counts more than we do (another app instance, or hits we never saw).
                state.month_hits = state.month_hits.max(self.month_limit);
            }
            if state.blocked_until_ms.is_none_or(|b| b < until) {
                state.blocked_until_ms = Some(until);
                state.blocked_period = Some(period);
            }
            Ok(())
        });
        if let Err(err) = result {
            tracing::warn!(error = %err, "could not record the rate limit in the ledger");
        }
    }

    /// The current counts (from the file, so other processes' hits are included).
    pub fn snapshot(&self) -> LedgerSnapshot {
        let now = self.clock.now_ms();
        let mut state = self.read().unwrap_or_else(|_| self.cached_state());
        roll(&mut state, now);
        let recent_ms = window_stamps(&state, now);
        LedgerSnapshot {
            month_used: state.month_hits,
            month_limit: self.month_limit,
            minute_used: recent_ms.len() as u32,
            minute_limit: self.minute_limit,
            next_free_ms: next_free(&state, now, self.minute_limit, self.month_limit).map_or(now, |(_, t)| t),
            recent_ms,
        }
    }

    fn cached_state(&self) -> LedgerState {
        self.cached.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Read-modify-write under the file lock.
    fn update<T>(&self, change: impl FnOnce(&mut LedgerState) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let io_err =
            |err: io::Error| ApiError::Storage { message: format!("hit ledger {}: {err}", self.path.display()) };
        let _lock = FileLock::acquire(&self.lock_path).map_err(io_err)?;
        let mut state = self.read().map_err(io_err)?;
        roll(&mut state, self.clock.now_ms());
        let out = change(&mut state)?;
        let bytes = serde_json::to_vec_pretty(&state).expect("ledger state serializes");
        fsutil::write_atomic(&self.path, &bytes).map_err(io_err)?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = state;
        Ok(out)
    }

    fn read(&self) -> io::Result<LedgerState> {
        match std::fs::read(&self.path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(state) => {
                    self.said_damaged.store(false, Ordering::Relaxed);
                    Ok(state)
                }
                // Only a hand edit can damage it (writes are atomic); count the month as spent
                // rather than risk passing Enphase's limit.
                Err(err) => {
                    if !self.said_damaged.swap(true, Ordering::Relaxed) {
                        tracing::error!(path = %self.path.display(), error = %err, "hit ledger is unreadable; treating this month as used up");
                    }
                    Ok(LedgerState {
                        month: month_key(self.clock.now_ms()),
                        month_hits: self.month_limit,
                        ..LedgerState::default()
                    })
                }
            },
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(LedgerState::default()),
            Err(err) => Err(err),
        }
    }
}

/// Drops hits older than a minute, resets the month counter at a new UTC month, and forgets an
/// expired block.
fn roll(state: &mut LedgerState, now: Millis) {
    let month = month_key(now);
    if state.month != month {
        state.month = month;
        state.month_hits = 0;
    }
    // A hit whose request has timed out without an answer recorded (its process died) counts
    // from its timeout (no later than the longest a request can take: a hand edit); one "sent"
    // long after now (a clock set back) from now.
    for s in &mut state.sending {
        s.until_ms = s.until_ms.min(s.sent_ms.saturating_add(MAX_SENDING_MS + SENDING_SLACK_MS));
    }
    let (ended, on_way): (Vec<Sending>, Vec<Sending>) =
        state.sending.iter().partition(|s| s.until_ms <= now || s.sent_ms > now + WINDOW_MS);
    state.sending = on_way;
    for s in ended {
        insert_sorted(&mut state.recent_ms, s.until_ms.min(now));
    }
    while state.recent_ms.front().is_some_and(|t| *t <= now - WINDOW_MS) {
        state.recent_ms.pop_front();
    }
    // A clock that went backwards must not let hits "from the future" linger forever.
    state.recent_ms.retain(|t| *t <= now + WINDOW_MS);
    // A block longer than any quota window (a hand-edited file, a clock set back) is dropped.
    if state.blocked_until_ms.is_some_and(|until| until <= now || until > now.saturating_add(MAX_BLOCK_MS)) {
        state.blocked_until_ms = None;
        state.blocked_period = None;
    }
}

/// `None` when a hit may be sent at `now`; otherwise which limit stops it and until when.
fn next_free(state: &LedgerState, now: Millis, minute_limit: u32, month_limit: u32) -> Option<(RatePeriod, Millis)> {
    if let Some(until) = state.blocked_until_ms.filter(|u| *u > now) {
        return Some((state.blocked_period.unwrap_or(RatePeriod::Minute), until));
    }
    if state.month_hits >= month_limit {
        return Some((RatePeriod::Month, next_month_start_ms(now)));
    }
    let in_window = window_stamps(state, now);
    if in_window.len() >= minute_limit as usize {
        // The window frees up when enough of its oldest hits have left it (a hit on its way, at
        // the earliest a window from now).
        let excess = in_window.len() + 1 - minute_limit as usize;
        let oldest = in_window.get(excess - 1).copied();
        return Some((RatePeriod::Minute, oldest.map_or(now + WINDOW_MS, |t| t + WINDOW_MS)));
    }
    None
}

/// When each hit in the window at `now` counts from, oldest first: its answer, or now for a hit on
/// its way.
fn window_stamps(state: &LedgerState, now: Millis) -> Vec<Millis> {
    let mut stamps: Vec<Millis> = state.recent_ms.iter().copied().filter(|t| *t > now - WINDOW_MS).collect();
    stamps.extend(state.sending.iter().map(|_| now));
    stamps.sort_unstable();
    stamps
}

fn insert_sorted(stamps: &mut VecDeque<Millis>, t: Millis) {
    let at = stamps.partition_point(|s| *s <= t);
    stamps.insert(at, t);
}

/// `YYYY-MM` of the UTC month holding `ms`.
pub fn month_key(ms: Millis) -> String {
    let t = utc(ms);
    format!("{:04}-{:02}", t.year(), t.month())
}

/// The first instant of the UTC month after the one holding `ms`.
pub fn next_month_start_ms(ms: Millis) -> Millis {
    let t = utc(ms);
    let (y, m) = if t.month() == 12 { (t.year() + 1, 1) } else { (t.year(), t.month() + 1) };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().map_or(ms + 31 * 86_400_000, |d| d.timestamp_millis())
}

fn utc(ms: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, ManualClock};
    use std::sync::Arc;

    // 2026-11-28T10:00:00Z
    const T0: Millis = 1_795_860_000_000;
    const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

    fn open(dir: &Path, clock: &Arc<ManualClock>) -> Ledger {
        Ledger::open(dir, 10, 1000, clock.clone()).unwrap()
    }

    #[test]
    fn eleventh_hit_in_any_sixty_seconds_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0 + 30_000); // mid-minute: clock minutes would let this through
        let ledger = open(dir.path(), &clock);
        for _ in 0..10 {
            drop(ledger.reserve(TIMEOUT).unwrap());
            clock.advance_ms(2_000);
        }
        // 20 s later the clock minute has changed, but the window still holds 10 hits.
        match ledger.reserve(TIMEOUT) {
            Err(ApiError::BudgetExhausted { period: RatePeriod::Minute, until_ms }) => {
                assert_eq!(until_ms, T0 + 30_000 + WINDOW_MS, "frees when the oldest hit has left the window")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert_eq!(ledger.snapshot().minute_used, 10);
        clock.set_ms(T0 + 30_000 + MINUTE_MS);
        assert!(ledger.reserve(TIMEOUT).is_err(), "a minute is not enough: a second's margin for latency");
        clock.set_ms(T0 + 30_000 + WINDOW_MS);
        drop(ledger.reserve(TIMEOUT).expect("the oldest hit has left the window"));
    }

    #[test]
    fn counts_survive_a_restart_and_reset_with_the_utc_month() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let ledger = open(dir.path(), &clock);
        for _ in 0..3 {
            drop(ledger.reserve(TIMEOUT).unwrap());
        }
        drop(ledger);
        let again = open(dir.path(), &clock);
        assert_eq!(again.snapshot().month_used, 3);
        clock.set_ms(next_month_start_ms(T0));
        assert_eq!(again.snapshot().month_used, 0);
        assert_eq!(month_key(clock.now_ms()), "2026-12");
    }

    #[test]
    fn month_limit_refuses_until_next_month() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let ledger = Ledger::open(dir.path(), 10, 2, clock.clone()).unwrap();
        drop(ledger.reserve(TIMEOUT).unwrap());
        clock.advance_ms(MINUTE_MS);
        drop(ledger.reserve(TIMEOUT).unwrap());
        clock.advance_ms(MINUTE_MS);
        let err = ledger.reserve(TIMEOUT).unwrap_err();
        let ApiError::BudgetExhausted { period: RatePeriod::Month, until_ms } = err else { panic!("{err:?}") };
        assert_eq!(until_ms, next_month_start_ms(T0));
        assert_eq!(ledger.snapshot().month_left(), 0);
    }

    #[test]
    fn a_429_blocks_until_period_end() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let ledger = open(dir.path(), &clock);
        ledger.note_rate_limited(Some(RatePeriod::Minute), Some(T0 / 1000 + 45));
        assert!(
            matches!(ledger.reserve(TIMEOUT), Err(ApiError::BudgetExhausted { until_ms, .. }) if until_ms == T0 + 45_000)
        );
        clock.advance_ms(45_000);
        drop(ledger.reserve(TIMEOUT).unwrap());
        // A period_end ages away (from the network) blocks a month and a day at most.
        ledger.note_rate_limited(Some(RatePeriod::Month), Some(i64::MAX / 1000));
        let Err(ApiError::BudgetExhausted { until_ms, .. }) = ledger.reserve(TIMEOUT) else { panic!("blocked") };
        assert_eq!(until_ms, clock.now_ms() + MAX_BLOCK_MS);
    }

    #[test]
    fn a_damaged_file_counts_the_month_as_spent() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger.json"), b"{ not json").unwrap();
        let clock = ManualClock::new(T0);
        let ledger = open(dir.path(), &clock);
        assert!(matches!(ledger.reserve(TIMEOUT), Err(ApiError::BudgetExhausted { period: RatePeriod::Month, .. })));
    }

    /// Enphase counts a hit on its arrival, at the latest when its answer is back: a hit whose
    /// answer took 5 s leaves the window a window after that answer, not after its sending.
    #[test]
    fn a_hit_counts_from_its_answer_and_while_on_its_way_as_if_answered_now() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let ledger = open(dir.path(), &clock);
        let slow = ledger.reserve(TIMEOUT).unwrap();
        clock.advance_ms(5_000);
        drop(slow);
        for _ in 0..9 {
            drop(ledger.reserve(TIMEOUT).unwrap());
        }
        clock.set_ms(T0 + WINDOW_MS);
        match ledger.reserve(TIMEOUT) {
            Err(ApiError::BudgetExhausted { period: RatePeriod::Minute, until_ms }) => {
                assert_eq!(until_ms, T0 + 5_000 + WINDOW_MS, "frees a window after the slow hit's answer")
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        clock.set_ms(T0 + 5_000 + WINDOW_MS);
        drop(ledger.reserve(TIMEOUT).expect("the slow hit has left the window"));

        // Ten hits on their way for over a window still fill it, and count from their answers.
        clock.advance_ms(10 * MINUTE_MS);
        let long = std::time::Duration::from_secs(120);
        let on_way: Vec<Hit<'_>> = (0..10).map(|_| ledger.reserve(long).unwrap()).collect();
        clock.advance_ms(WINDOW_MS + 10_000);
        assert_eq!(ledger.snapshot().minute_used, 10);
        assert!(ledger.reserve(TIMEOUT).is_err(), "unanswered hits are still in the window");
        let answered_at = clock.now_ms();
        drop(on_way);
        assert_eq!(ledger.snapshot().recent_ms, vec![answered_at; 10]);
    }

    /// A process that died mid-request never records the answer: its hit counts as answered when
    /// the request would have timed out, and leaves the window a window later.
    #[test]
    fn a_hit_whose_answer_never_came_counts_from_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let ledger = Ledger::open(dir.path(), 1, 1000, clock.clone()).unwrap();
        std::mem::forget(ledger.reserve(TIMEOUT).unwrap());
        clock.advance_ms(20_000);
        let again = Ledger::open(dir.path(), 1, 1000, clock.clone()).unwrap();
        let Err(ApiError::BudgetExhausted { until_ms, .. }) = again.reserve(TIMEOUT) else { panic!("on its way") };
        assert_eq!(until_ms, clock.now_ms() + WINDOW_MS, "at the earliest a window from now");
        let timed_out = T0 + 30_000 + SENDING_SLACK_MS;
        clock.set_ms(timed_out + 1);
        let Err(ApiError::BudgetExhausted { until_ms, .. }) = again.reserve(TIMEOUT) else { panic!("in the window") };
        assert_eq!(until_ms, timed_out + WINDOW_MS);
        clock.set_ms(timed_out + WINDOW_MS);
        drop(again.reserve(TIMEOUT).expect("out of the window"));
    }

    /// Two processes' hits sent in the same millisecond are told apart: the answer of one does
    /// not end the other, whose request may run longer.
    #[test]
    fn hits_sent_together_are_answered_each_by_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let slow_process = open(dir.path(), &clock);
        let quick_process = open(dir.path(), &clock);
        let slow = slow_process.reserve(std::time::Duration::from_secs(600)).unwrap();
        drop(quick_process.reserve(TIMEOUT).unwrap());
        clock.advance_ms(100_000);
        assert_eq!(quick_process.snapshot().recent_ms, vec![clock.now_ms()], "the slow hit is still on its way");
        drop(slow);
        assert_eq!(slow_process.snapshot().recent_ms, vec![clock.now_ms()], "and counts from its answer");

        // A hand-edited hit "on its way" for longer than any request is not kept for ever.
        let edited = LedgerState {
            month: month_key(T0),
            sending: vec![Sending { id: 7, sent_ms: T0, until_ms: i64::MAX }],
            ..LedgerState::default()
        };
        std::fs::write(dir.path().join("ledger.json"), serde_json::to_vec(&edited).unwrap()).unwrap();
        clock.set_ms(T0 + MAX_SENDING_MS + SENDING_SLACK_MS - 1);
        assert_eq!(open(dir.path(), &clock).snapshot().minute_used, 1, "on its way as long as a request can be");
        clock.set_ms(T0 + MAX_SENDING_MS + SENDING_SLACK_MS + WINDOW_MS);
        assert_eq!(open(dir.path(), &clock).snapshot().minute_used, 0);
    }
}
