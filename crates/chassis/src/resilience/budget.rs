//! A retry budget: every request deposits `ratio` of a token, every retry
//! spends a whole one, and a small floor of retries per second is always
//! allowed. Retries therefore stay below `ratio` of the traffic (plus the
//! floor) however bad things get, and cannot multiply the load on a
//! struggling service.

use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct RetryBudget {
    ratio: f64,
    floor_per_second: f64,
    state: Mutex<(f64, Instant)>,
}

impl Default for RetryBudget {
    /// Retries up to 20 % of requests, plus 10 per second.
    fn default() -> Self {
        Self::new(0.2, 10.0)
    }
}

impl RetryBudget {
    pub fn new(ratio: f64, floor_per_second: f64) -> Self {
        Self {
            ratio,
            floor_per_second,
            state: Mutex::new((floor_per_second, Instant::now())),
        }
    }

    fn refill(&self, state: &mut (f64, Instant)) {
        let now = Instant::now();
        let floor = now.duration_since(state.1).as_secs_f64() * self.floor_per_second;
        // The floor accrues over time up to a second's worth; deposits may
        // bank more.
        state.0 = (state.0 + floor).min(state.0.max(self.floor_per_second));
        state.1 = now;
    }

    /// Called once per request.
    pub fn deposit(&self) {
        if let Ok(mut state) = self.state.lock() {
            self.refill(&mut state);
            state.0 = (state.0 + self.ratio).min(1000.0);
        }
    }

    /// Whether a retry may be spent now.
    pub fn try_withdraw(&self) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        self.refill(&mut state);
        if state.0 >= 1.0 {
            state.0 -= 1.0;
            true
        } else {
            metrics::counter!("retries_over_budget_total").increment(1);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retries_stay_within_a_fifth_of_requests() {
        let budget = RetryBudget::new(0.2, 0.0);
        let mut retries = 0;
        for _ in 0..100 {
            budget.deposit();
            if budget.try_withdraw() {
                retries += 1;
            }
        }
        assert_eq!(retries, 20);
    }
}
