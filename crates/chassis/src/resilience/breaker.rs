//! A count-based circuit breaker in the manner of Resilience4j.
//!
//! Closed, it records the outcome of the last `window` calls; once at least
//! `minimum_calls` are recorded and the share of failures or of slow calls
//! reaches its threshold, it opens. Open, it refuses every call at once until
//! `open_for` has passed; then it lets `half_open_calls` trial calls through
//! (half-open): all of them fine closes it, any failure opens it again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How a call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// It succeeded, but slower than `slow_call`.
    Slow,
    Failure,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    /// Calls remembered while closed.
    pub window: usize,
    /// Calls needed before the breaker judges at all.
    pub minimum_calls: usize,
    /// Share of failures (0–1) that opens it.
    pub failure_rate: f64,
    /// Share of slow calls (0–1) that opens it.
    pub slow_call_rate: f64,
    /// A call slower than this counts as slow.
    pub slow_call: Duration,
    /// How long it stays open before trying again.
    pub open_for: Duration,
    /// Trial calls let through while half-open.
    pub half_open_calls: usize,
}

impl Default for BreakerSettings {
    /// Resilience4j uses a window of 100, minimum 100 calls, 50 % failures,
    /// 100 % slow calls over 60 s, 60 s open and 10 trial calls: sized for
    /// busy production services. On a development machine a dependency sees
    /// few calls, so the window is 20 (minimum 10), a slow call is 2 s, 80 %
    /// slow calls also open it, and it tries again after 5 s with 3 calls.
    fn default() -> Self {
        Self {
            window: 20,
            minimum_calls: 10,
            failure_rate: 0.5,
            slow_call_rate: 0.8,
            slow_call: Duration::from_secs(2),
            open_for: Duration::from_secs(5),
            half_open_calls: 3,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { outcomes: Outcomes },
    Open { until: Instant },
    HalfOpen { permits: usize, successes: usize },
}

/// The outcomes of the last calls, oldest first, with how many failed and
/// how many were slow kept as they come and go (not counted per call).
#[derive(Debug)]
struct Outcomes {
    last: VecDeque<Outcome>,
    failures: usize,
    slow: usize,
}

impl Outcomes {
    fn new(window: usize) -> Self {
        Self {
            last: VecDeque::with_capacity(window),
            failures: 0,
            slow: 0,
        }
    }

    /// Adds `outcome`, forgetting the oldest one beyond `window`.
    fn push(&mut self, outcome: Outcome, window: usize) {
        if self.last.len() == window
            && let Some(oldest) = self.last.pop_front()
        {
            self.count(oldest, false);
        }
        self.last.push_back(outcome);
        self.count(outcome, true);
    }

    fn count(&mut self, outcome: Outcome, added: bool) {
        let counter = match outcome {
            Outcome::Success => return,
            Outcome::Slow => &mut self.slow,
            Outcome::Failure => &mut self.failures,
        };
        if added {
            *counter += 1;
        } else {
            *counter -= 1;
        }
    }
}

impl State {
    fn gauge(&self) -> f64 {
        match self {
            Self::Closed { .. } => 0.0,
            Self::Open { .. } => 1.0,
            Self::HalfOpen { .. } => 2.0,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half-open",
        }
    }
}

/// One breaker, for one dependency.
#[derive(Debug)]
pub struct Breaker {
    name: String,
    settings: BreakerSettings,
    state: Mutex<State>,
}

/// The breaker refused the call; try again after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub retry_after: Duration,
}

impl Breaker {
    pub fn new(name: impl Into<String>, settings: BreakerSettings) -> Self {
        let breaker = Self {
            name: name.into(),
            settings,
            state: Mutex::new(State::Closed {
                outcomes: Outcomes::new(settings.window),
            }),
        };
        metrics::gauge!("circuit_breaker_state", "name" => breaker.name.clone()).set(0.0);
        breaker
    }

    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// Whether a call may go ahead now.
    pub fn try_acquire(&self) -> Result<(), Open> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if let State::Open { until } = *state {
            if now < until {
                return Err(Open {
                    retry_after: until - now,
                });
            }
            self.transition(
                &mut state,
                State::HalfOpen {
                    permits: self.settings.half_open_calls,
                    successes: 0,
                },
            );
        }
        match &mut *state {
            State::HalfOpen { permits, .. } => {
                if *permits == 0 {
                    return Err(Open {
                        retry_after: Duration::from_secs(1),
                    });
                }
                *permits -= 1;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Records how a permitted call went.
    pub fn record(&self, outcome: Outcome) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let settings = self.settings;
        let next = match &mut *state {
            State::Closed { outcomes } => {
                outcomes.push(outcome, settings.window);
                let calls = outcomes.last.len();
                if calls < settings.minimum_calls {
                    None
                } else {
                    let tripped = outcomes.failures as f64 / calls as f64 >= settings.failure_rate
                        || outcomes.slow as f64 / calls as f64 >= settings.slow_call_rate;
                    tripped.then(|| State::Open {
                        until: Instant::now() + settings.open_for,
                    })
                }
            }
            State::HalfOpen { successes, .. } => {
                if outcome == Outcome::Failure {
                    Some(State::Open {
                        until: Instant::now() + settings.open_for,
                    })
                } else {
                    *successes += 1;
                    (*successes >= settings.half_open_calls).then(|| State::Closed {
                        outcomes: Outcomes::new(settings.window),
                    })
                }
            }
            // A call that started before the breaker opened: its outcome no
            // longer matters.
            State::Open { .. } => None,
        };
        if let Some(next) = next {
            self.transition(&mut state, next);
        }
    }

    fn transition(&self, state: &mut State, next: State) {
        tracing::warn!(breaker = %self.name, from = state.name(), to = next.name(), "circuit breaker changed state");
        metrics::gauge!("circuit_breaker_state", "name" => self.name.clone()).set(next.gauge());
        *state = next;
    }

    /// `closed`, `open` or `half-open`.
    pub fn state(&self) -> &'static str {
        self.state.lock().map(|s| s.name()).unwrap_or("closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new("test", BreakerSettings::default())
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_failures_then_half_opens_and_closes() {
        let b = breaker();
        for _ in 0..9 {
            b.try_acquire().unwrap();
            b.record(Outcome::Failure);
        }
        assert_eq!(
            b.state(),
            "closed",
            "fewer than the minimum calls: no judgement yet"
        );
        b.try_acquire().unwrap();
        b.record(Outcome::Failure);
        assert_eq!(b.state(), "open");
        let refused = b.try_acquire().unwrap_err();
        assert!(refused.retry_after <= Duration::from_secs(5));

        tokio::time::advance(Duration::from_secs(5)).await;
        for _ in 0..3 {
            b.try_acquire().unwrap();
        }
        assert!(
            b.try_acquire().is_err(),
            "only three trial calls while half-open"
        );
        assert_eq!(b.state(), "half-open");
        for _ in 0..3 {
            b.record(Outcome::Success);
        }
        assert_eq!(b.state(), "closed");
        assert!(b.try_acquire().is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_trial_opens_it_again() {
        let b = breaker();
        for _ in 0..10 {
            b.record(Outcome::Failure);
        }
        tokio::time::advance(Duration::from_secs(6)).await;
        b.try_acquire().unwrap();
        b.record(Outcome::Failure);
        assert_eq!(b.state(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_calls_open_it_and_a_healthy_mix_does_not() {
        let b = breaker();
        for i in 0..20 {
            b.record(if i % 3 == 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            });
        }
        assert_eq!(b.state(), "closed", "a third failing is below half");
        let slow = breaker();
        for _ in 0..10 {
            slow.record(Outcome::Slow);
        }
        assert_eq!(slow.state(), "open");
    }

    #[tokio::test(start_paused = true)]
    async fn only_the_last_window_of_calls_counts() {
        let b = breaker();
        // Nine failures among nineteen calls, then twenty successes push
        // them out of the window.
        for _ in 0..10 {
            b.record(Outcome::Success);
        }
        for _ in 0..9 {
            b.record(Outcome::Failure);
        }
        assert_eq!(b.state(), "closed", "9 of 19 failed");
        for _ in 0..20 {
            b.record(Outcome::Success);
        }
        for _ in 0..9 {
            b.record(Outcome::Failure);
        }
        assert_eq!(b.state(), "closed", "9 of the last 20 failed");
        b.record(Outcome::Failure);
        assert_eq!(b.state(), "open", "10 of the last 20 failed");
    }
}
