//! The in-process bus of device happenings, for the live portal and the
//! delegation engine. Best effort: a slow subscriber misses events (it is
//! told so by `RecvError::Lagged`) and reads the database instead.

use tokio::sync::broadcast;

/// Something that happened to a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// An authenticated session began.
    SessionStarted { devid: String, session_id: String },
    /// A session ended; `outcome` as in `session_history`.
    SessionEnded {
        devid: String,
        session_id: String,
        outcome: String,
    },
    /// A job changed state (`sent`, `succeeded`, `failed`).
    JobUpdated {
        devid: String,
        job: i64,
        state: String,
        status: Option<i64>,
    },
    /// DevInfo (Man, Mod, DmV, Lang) was reported.
    DevInfoUpdated { devid: String },
    /// The cached tree or DevDetail changed.
    InventoryUpdated { devid: String },
    /// A package 0 was sent or left for the gateway.
    Notified { devid: String, transport: String },
}

/// A cloneable sender; subscribe for a receiver.
#[derive(Debug, Clone)]
pub struct EventBus(broadcast::Sender<DeviceEvent>);

impl Default for EventBus {
    fn default() -> Self {
        EventBus(broadcast::channel(1024).0)
    }
}

impl EventBus {
    pub fn publish(&self, e: DeviceEvent) {
        // No subscriber is not an error.
        let _ = self.0.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<DeviceEvent> {
        self.0.subscribe()
    }
}
