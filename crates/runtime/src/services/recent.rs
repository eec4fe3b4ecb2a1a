//! The recent history of one function, kept in memory for `meshwa logs`: its last invocations
//! (status, duration, error) and the guest log lines that passed the rate limit, newest last.
//!
//! Bounded ([`RECENT_ENTRIES`] per function) and lossy by design: it is for a developer looking
//! at what just happened, not an audit trail (the host's log has everything). Secret values are
//! already redacted when lines get here.
//!
//! Followers (`meshwa logs -f`) [`RecentLog::subscribe`] to new entries as they are pushed. A
//! follower that falls more than [`FOLLOW_BACKLOG`] entries behind misses the oldest and is told
//! how many; nobody following costs one atomic load per entry.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Entries kept per function.
pub const RECENT_ENTRIES: usize = 256;

/// Entries a follower may be behind before it misses some.
pub const FOLLOW_BACKLOG: usize = 256;

/// One entry of a function's recent history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecentEntry {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub invocation: String,
    #[serde(flatten)]
    pub what: RecentWhat,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RecentWhat {
    /// An invocation answered (`error` is the error kind if it failed).
    Invocation {
        status: u16,
        duration_us: u64,
        error: Option<String>,
    },
    /// A line the guest logged.
    Log { stream: String, message: String },
}

/// A function's recent history.
pub struct RecentLog {
    entries: Mutex<VecDeque<RecentEntry>>,
    followers: tokio::sync::broadcast::Sender<RecentEntry>,
}

impl Default for RecentLog {
    fn default() -> Self {
        RecentLog {
            entries: Mutex::default(),
            followers: tokio::sync::broadcast::Sender::new(FOLLOW_BACKLOG),
        }
    }
}

impl RecentLog {
    pub fn push(&self, invocation: &str, what: RecentWhat) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // A poisoned lock only means a panic between two deque operations; the deque is intact.
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == RECENT_ENTRIES {
            entries.pop_front();
        }
        let entry = RecentEntry {
            at_ms,
            invocation: invocation.to_owned(),
            what,
        };
        if self.followers.receiver_count() > 0 {
            // Sent under the lock, so followers see entries in the order they were kept.
            let _ = self.followers.send(entry.clone());
        }
        entries.push_back(entry);
    }

    /// New entries from now on, as they are pushed.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<RecentEntry> {
        self.followers.subscribe()
    }

    /// The newest `limit` entries, oldest first.
    pub fn latest(&self, limit: usize) -> Vec<RecentEntry> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let skip = entries.len().saturating_sub(limit);
        entries.iter().skip(skip).cloned().collect()
    }
}
