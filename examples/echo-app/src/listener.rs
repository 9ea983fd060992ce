//! The listener thread: takes messages from the plugin's queue and logs
//! them, until the queue is closed.

use threatbus_plugin_api::{Counter, Queue};

/// Runs until `queue` is closed and empty; counts into `received`.
pub fn run(queue: Queue, received: Counter) {
    while let Some(msg) = queue.recv() {
        received.inc();
        log::info!("echo #{}: {} {}", received.get(), msg.topic(), msg.json());
    }
}
