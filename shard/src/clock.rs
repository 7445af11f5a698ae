//! Where block times come from: the system clock, or the deterministic simulator's clock.

use std::time::{SystemTime, UNIX_EPOCH};

/// The clock a leader reads to stamp the blocks it proposes.
#[derive(Clone, Copy, Debug, Default)]
pub enum Clock {
    /// Wall-clock time.
    #[default]
    System,
    /// `epoch_ms` plus the tokio time elapsed since `origin`: on a runtime with paused time this
    /// is simulated time, identical from run to run.
    Simulated {
        /// Milliseconds since the Unix epoch at `origin`.
        epoch_ms: u64,
        /// The tokio instant that corresponds to `epoch_ms`.
        origin: tokio::time::Instant,
    },
}

impl Clock {
    /// A simulated clock that reads `epoch_ms` now (call it inside the runtime it will run on).
    pub fn simulated(epoch_ms: u64) -> Clock {
        Clock::Simulated { epoch_ms, origin: tokio::time::Instant::now() }
    }

    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        match self {
            Clock::System => SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64),
            Clock::Simulated { epoch_ms, origin } => epoch_ms + origin.elapsed().as_millis() as u64,
        }
    }
}
