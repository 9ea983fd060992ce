//! The provisioner thread: reads `inq` in batches and hands every message
//! to each queue subscribed to a prefix of its topic.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use threatbus_plugin_api::Queue;
use threatbus_routing::{self as routing, Subscriptions};

/// Runs until `inq` is closed and drained.
pub fn run(inq: Queue, subs: Arc<Subscriptions>, stopping: Arc<AtomicBool>) {
    let mut batch = Vec::with_capacity(256);
    let mut scratch = Vec::new();
    loop {
        batch.clear();
        if !inq.recv_batch(&mut batch, 256, None) {
            break;
        }
        for msg in &batch {
            routing::provision(&subs, msg, &stopping, &mut scratch);
        }
    }
    log::info!("In-memory backbone stopped");
}
