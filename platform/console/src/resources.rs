//! The processes the console shows and what an operator may do to them.
//! The supervisor that owns them (`dure up`) implements [`Processes`].

use serde::Serialize;
use std::str::FromStr;

/// One supervised process, as the console shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Resource {
    pub service: String,
    /// Stable across restarts: the service's name, or `posting-2` for a
    /// second replica.
    pub instance_id: String,
    pub pid: Option<u32>,
    pub address: String,
    pub state: State,
    pub restarts: u32,
    /// Seconds since the current process started.
    pub uptime_secs: Option<u64>,
    /// CPU use over the last sample, in percent of one core.
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<u64>,
    /// Its `/readyz` answered 200 at the last look.
    pub ready: bool,
    /// The instance id it holds a registry lease under, if any.
    pub lease: Option<String>,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, not ready yet.
    Starting,
    /// Running and ready.
    Running,
    /// Running, its readiness check failing.
    Unready,
    /// Stopped by SIGSTOP.
    Paused,
    /// Stopped on purpose; stays down until started.
    Stopped,
    /// Died; the supervisor starts it again after a pause.
    Restarting,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Unready => "unready",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
            Self::Restarting => "restarting",
        }
    }
}

/// What an operator can do to a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGTERM, then start it again.
    Restart,
    /// SIGTERM; it stays down.
    Stop,
    /// Start a stopped process.
    Start,
    /// SIGKILL, as a crash would: the supervisor restarts it.
    Kill,
    /// SIGSTOP: alive but answering nothing.
    Pause,
    /// SIGCONT after a pause.
    Resume,
}

impl Action {
    pub const ALL: [Self; 6] = [
        Self::Restart,
        Self::Stop,
        Self::Start,
        Self::Kill,
        Self::Pause,
        Self::Resume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Restart => "restart",
            Self::Stop => "stop",
            Self::Start => "start",
            Self::Kill => "kill",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

impl FromStr for Action {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|action| action.as_str() == text)
            .ok_or_else(|| {
                format!("{text:?} is not an action (restart, stop, start, kill, pause, resume)")
            })
    }
}

/// Why an action was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No such process.
    Unknown,
    /// Not in a state the action applies to (e.g. resuming a running one).
    Conflict(String),
}

/// The supervisor's side: what runs, and acting on it. Actions are carried
/// out in the background; `act` answers whether one was accepted.
pub trait Processes: Send + Sync + 'static {
    fn list(&self) -> Vec<Resource>;
    fn act(&self, instance_id: &str, action: Action) -> Result<(), Refusal>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse_by_name() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("explode".parse::<Action>().is_err());
    }
}
