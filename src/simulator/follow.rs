//! The simulator's clock, seen from another process: `--clock-url` makes `run` and `auth` keep
//! the time of a simulator that may run faster than real time or was moved on, so that the
//! end-to-end tests can run the real `enphase-mqtt run` process through a simulated day.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::clock::{Clock, Millis, SharedClock};

/// Where the followed clock was last read: then (real), its time then, and its speed.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    at: Instant,
    ms: Millis,
    speed: f64,
}

/// A clock following a simulator's `GET /admin/clock`, read again every 200 ms.
#[derive(Debug)]
pub struct FollowedClock {
    anchor: Mutex<Anchor>,
}

impl FollowedClock {
    fn estimate(anchor: &Anchor) -> Millis {
        anchor.ms + (anchor.at.elapsed().as_secs_f64() * 1000.0 * anchor.speed) as Millis
    }

    /// Takes a new reading; time never runs backwards (a reading is a little late when it
    /// arrives), but a jump forward is followed at once.
    fn set(&self, ms: Millis, speed: f64) {
        let mut anchor = self.anchor.lock().unwrap_or_else(|e| e.into_inner());
        let now = Self::estimate(&anchor).max(ms);
        *anchor = Anchor { at: Instant::now(), ms: now, speed };
    }
}

impl Clock for FollowedClock {
    fn now_ms(&self) -> Millis {
        Self::estimate(&self.anchor.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn real_wait(&self, ms: i64) -> Duration {
        let speed = self.anchor.lock().unwrap_or_else(|e| e.into_inner()).speed;
        Duration::from_secs_f64(ms.max(0) as f64 / 1000.0 / speed)
    }

    fn recheck_every(&self) -> Duration {
        Duration::from_millis(200)
    }
}

/// Reads the simulator's clock: its now (ms) and speed.
async fn read(http: &reqwest::Client, url: &str) -> anyhow::Result<(Millis, f64)> {
    let body: serde_json::Value = http.get(url).send().await?.error_for_status()?.json().await?;
    let ms = body["now_ms"].as_i64().context("no now_ms in the answer")?;
    let speed = body["speed"].as_f64().filter(|s| *s > 0.0).context("no positive speed in the answer")?;
    Ok((ms, speed))
}

/// Follows the clock of the simulator at `base_url`; keeps reading it in the background.
pub async fn follow(base_url: &str) -> anyhow::Result<SharedClock> {
    let url = format!("{}/admin/clock", base_url.trim_end_matches('/'));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    let (ms, speed) = read(&http, &url)
        .await
        .with_context(|| format!("--clock-url: could not read the simulator's clock at {url}"))?;
    let clock = Arc::new(FollowedClock { anchor: Mutex::new(Anchor { at: Instant::now(), ms, speed }) });
    let weak = Arc::downgrade(&clock);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(clock) = weak.upgrade() else { return };
            if let Ok((ms, speed)) = read(&http, &url).await {
                clock.set(ms, speed);
            }
        }
    });
    Ok(clock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_reading_never_turns_the_clock_back_but_a_jump_is_followed() {
        let clock = FollowedClock { anchor: Mutex::new(Anchor { at: Instant::now(), ms: 1_000_000, speed: 100.0 }) };
        std::thread::sleep(Duration::from_millis(20));
        let before = clock.now_ms();
        assert!(before >= 1_002_000, "runs at 100×: {before}");
        clock.set(1_000_500, 100.0);
        assert!(clock.now_ms() >= before, "not back to the late reading");
        clock.set(5_000_000, 100.0);
        assert!(clock.now_ms() >= 5_000_000);
        assert_eq!(clock.real_wait(60_000), Duration::from_millis(600));
    }
}
