//! Outlier ejection: an instance with `threshold` consecutive failures is
//! taken out of rotation for `base` × 2^(ejections − 1), up to `max`; a
//! success resets its count. The caller never ejects its last instance.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Ejection {
    threshold: u32,
    base: Duration,
    max: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    consecutive_failures: u32,
    ejections: u32,
    until: Option<Instant>,
}

impl Default for Ejection {
    fn default() -> Self {
        Self::new(5, Duration::from_secs(10), Duration::from_secs(300))
    }
}

impl Ejection {
    pub fn new(threshold: u32, base: Duration, max: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            base,
            max,
            state: Mutex::new(State::default()),
        }
    }

    pub fn is_ejected(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.until.is_some_and(|until| Instant::now() < until))
            .unwrap_or(false)
    }

    pub fn success(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.consecutive_failures = 0;
        }
    }

    /// Counts a failure; true if the instance has just been ejected.
    pub fn failure(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        state.consecutive_failures += 1;
        if state.consecutive_failures < self.threshold {
            return false;
        }
        state.consecutive_failures = 0;
        state.ejections += 1;
        let factor = 2u32.saturating_pow(state.ejections.saturating_sub(1).min(16));
        let period = self.base.saturating_mul(factor).min(self.max);
        state.until = Some(Instant::now() + period);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn ejections_grow_and_end() {
        let ejection = Ejection::new(3, Duration::from_secs(10), Duration::from_secs(60));
        assert!(!ejection.failure() && !ejection.failure());
        ejection.success();
        assert!(!ejection.failure() && !ejection.failure());
        assert!(ejection.failure());
        assert!(ejection.is_ejected());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(!ejection.is_ejected());
        for _ in 0..3 {
            ejection.failure();
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(ejection.is_ejected(), "the second ejection lasts 20 s");
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(!ejection.is_ejected());
    }
}
