//! The listener thread: takes messages from the plugin's queue and logs
//! them, until the queue is closed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use threatbus_plugin_api::Queue;

/// Runs until `queue` is closed and empty; counts into `received`.
pub fn run(queue: Queue, received: Arc<AtomicU64>) {
    while let Some(msg) = queue.recv() {
        let n = received.fetch_add(1, Ordering::Relaxed) + 1;
        log::info!("echo #{n}: {} {}", msg.topic(), msg.json());
    }
}
