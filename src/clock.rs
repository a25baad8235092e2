//! The one source of "now" for everything that budgets, schedules or expires, so that tests and
//! the month simulation can run a month in seconds.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> Millis;

    /// Whole seconds since the Unix epoch (what Enlighten uses in its timestamps).
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// How long to really wait for `ms` of this clock's time to pass (a sped-up clock waits less).
    fn real_wait(&self, ms: i64) -> std::time::Duration {
        std::time::Duration::from_millis(ms.max(0) as u64)
    }

    /// The longest a planned wait should run before looking at the clock again: a waiting timer
    /// does not see the clock jump (a suspend and resume, a stepped system clock, a simulator
    /// moved on or sped up).
    fn recheck_every(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }
}

/// A shared, dynamically chosen clock.
pub type SharedClock = Arc<dyn Clock>;

/// The real system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> Millis {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as Millis).unwrap_or(0)
    }
}

/// The system clock behind an `Arc`, the usual choice outside tests.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to: for unit tests and simulations.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    pub fn new(start_ms: Millis) -> Arc<Self> {
        Arc::new(Self { now: AtomicI64::new(start_ms) })
    }

    /// Moves the clock forward (or back, with a negative value) by `ms`.
    pub fn advance_ms(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `ms`.
    pub fn set_ms(&self, ms: Millis) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000_500);
        assert_eq!(clock.now_secs(), 1000);
        clock.advance_ms(61_000);
        assert_eq!(clock.now_ms(), 1_061_500);
        clock.set_ms(-1);
        assert_eq!(clock.now_secs(), -1, "seconds round towards minus infinity");
    }

    #[test]
    fn system_clock_is_after_2024() {
        assert!(SystemClock.now_secs() > 1_704_067_200);
    }
}
