//! The device side of the server: the DM endpoint (PROTOCOL Part A) over
//! HTTP, sessions persisted between messages, the command queue, inventory,
//! notifications (A.5) and the event bus.

pub mod endpoint;
pub mod enrol;
pub mod events;
pub mod notify;
pub mod rotate;
pub mod session;
pub mod tree_cache;
pub mod vault;

use crate::store::{now_ms, Db};
use events::EventBus;
use notify::{HttpPush, Notifier};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use vault::Vault;

/// Limits and policies of the DM endpoint.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body read (413 beyond).
    pub max_body: usize,
    /// Messages one session may exchange before it is cut off.
    pub max_messages: i64,
    /// A session without a message for this long has expired.
    pub idle_ms: i64,
    /// Auto-enrolment of unknown devices (off by default).
    pub enrolment: enrol::Policy,
    /// The time the DM runtime goes by.
    pub clock: Clock,
    /// How a failed HTTP push is tried again.
    pub push_retry: notify::Backoff,
}

/// The runtime's clock: the system's, moved on by [`Clock::advance`] so
/// tests can let sessions go idle without waiting (STYLE lesson 10). Clones
/// share one offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Moves this clock (and its clones) forward.
    pub fn advance(&self, d: std::time::Duration) {
        self.offset_ms
            .fetch_add(d.as_millis() as i64, Ordering::Relaxed);
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body: 1024 * 1024,
            max_messages: 200,
            idle_ms: 10 * 60 * 1000,
            enrolment: enrol::Policy::default(),
            clock: Clock::default(),
            push_retry: notify::Backoff::default(),
        }
    }
}

/// What the DM endpoint, the API and the CLI share.
#[derive(Clone)]
pub struct Runtime {
    pub db: Db,
    pub vault: Vault,
    pub bus: EventBus,
    pub settings: Settings,
    /// Transports tried in order; an address none handles goes to the
    /// gateway outbox.
    pub notifiers: Arc<Vec<Box<dyn Notifier>>>,
}

impl Runtime {
    pub fn new(db: Db, vault: Vault, settings: Settings) -> Runtime {
        Runtime {
            db,
            vault,
            bus: EventBus::default(),
            settings,
            notifiers: Arc::new(vec![Box::new(HttpPush::default())]),
        }
    }
}
