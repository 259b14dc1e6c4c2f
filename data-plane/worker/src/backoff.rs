//! Reconnection delays: exponential from [`RECONNECT_BACKOFF_MIN`] up to a maximum, with jitter
//! so that a fleet of workers does not reconnect in lockstep after a control plane restart.
//!
//! Pure arithmetic; the randomness is an input so the schedule is testable.

use std::time::Duration;

use crate::config::RECONNECT_BACKOFF_MIN;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// Failures since the last success.
    attempt: u32,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Backoff {
            min: RECONNECT_BACKOFF_MIN,
            max: max.max(RECONNECT_BACKOFF_MIN),
            attempt: 0,
        }
    }

    /// The delay before the next attempt; `jitter` is uniform in `[0, 1)`.
    pub fn next_delay(&mut self, jitter: f64) -> Duration {
        let delay = jittered(self.ceiling(self.attempt), jitter);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// The longest delay, jittered: used when retrying soon cannot help (a refused token).
    pub fn max_delay(&mut self, jitter: f64) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        jittered(self.max, jitter)
    }

    /// Failures since the last [`Backoff::reset`].
    pub fn failures(&self) -> u32 {
        self.attempt
    }

    /// A session got established: the next failure starts again from the shortest delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// `min * 2^attempt`, capped at `max`.
    fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }
}

/// "Equal jitter": somewhere in `[ceiling / 2, ceiling)`, so a delay never collapses to zero.
fn jittered(ceiling: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let half = ceiling / 2;
    half + half.mul_f64(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_up_to_the_maximum() {
        let mut b = Backoff::new(Duration::from_secs(1));
        // Full jitter (1.0) shows the ceiling of each step.
        let delays: Vec<_> = (0..7).map(|_| b.next_delay(1.0)).collect();
        assert_eq!(
            delays,
            [
                MS(100),
                MS(200),
                MS(400),
                MS(800),
                MS(1000),
                MS(1000),
                MS(1000)
            ]
        );
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        let mut b = Backoff::new(Duration::from_secs(5));
        assert_eq!(b.next_delay(0.0), MS(50));
        assert_eq!(b.next_delay(0.5), MS(150));
        assert_eq!(b.next_delay(f64::NAN), MS(200));
        assert_eq!(b.next_delay(7.0), MS(800));
    }

    #[test]
    fn reset_starts_over_and_max_delay_skips_ahead() {
        let mut b = Backoff::new(Duration::from_secs(2));
        assert_eq!(b.max_delay(1.0), MS(2000));
        assert_eq!(b.max_delay(0.0), MS(1000));
        assert_eq!(b.failures(), 2);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next_delay(1.0), MS(100));
    }

    #[test]
    fn never_overflows() {
        let mut b = Backoff::new(Duration::from_secs(5));
        for _ in 0..100 {
            assert!(b.next_delay(1.0) <= Duration::from_secs(5));
        }
        assert_eq!(
            Backoff::new(MS(1)).next_delay(1.0),
            MS(100),
            "max below min"
        );
    }
}
