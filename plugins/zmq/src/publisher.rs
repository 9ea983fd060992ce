//! The PUB socket: messages the bus delivers to apps.
//!
//! Every subscription has its own bounded queue (filled by the backbone) and
//! a forwarder thread that takes batches from it, formats the frames
//! `<p2p><type> <json>` and sends them on the shared PUB socket, one batch
//! at a time under a mutex (ZeroMQ sockets are not thread-safe).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use threatbus_plugin_api::{Message, MessageKind, Queue};

/// Largest batch taken from a subscriber queue at once.
const BATCH: usize = 512;

/// How often a subscriber's drop count is logged while it keeps dropping.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// Builds one outbound frame `<p2p><type> <json>`, or `None` for kinds that
/// are never sent to apps (snapshot envelopes are unwrapped by the core).
pub fn frame(p2p: &str, msg: &Message) -> Option<zmq::Message> {
    let type_name = match msg.kind() {
        MessageKind::INDICATOR | MessageKind::SIGHTING | MessageKind::SNAPSHOT_REQUEST => msg.kind().type_name(),
        _ => return None,
    };
    let json = msg.json().as_bytes();
    let mut z = zmq::Message::with_size(p2p.len() + type_name.len() + 1 + json.len());
    let (head, rest) = z.split_at_mut(p2p.len());
    head.copy_from_slice(p2p.as_bytes());
    let (ty, rest) = rest.split_at_mut(type_name.len());
    ty.copy_from_slice(type_name.as_bytes());
    rest[0] = b' ';
    rest[1..].copy_from_slice(json);
    Some(z)
}

/// The PUB socket, shared by the forwarders. ZeroMQ sockets are not
/// thread-safe, but may be used from several threads one after the other
/// with a full memory barrier in between (zmq_socket(3)): the mutex gives
/// exactly that. Each forwarder holds it for one batch.
pub struct Publisher {
    socket: Mutex<zmq::Socket>,
}

impl Publisher {
    pub fn new(socket: zmq::Socket) -> Self {
        Self { socket: Mutex::new(socket) }
    }

    fn send(&self, frames: &mut Vec<zmq::Message>) {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        for f in frames.drain(..) {
            // A PUB socket never blocks: at the high-water mark ZeroMQ drops
            // the frame for that subscriber.
            if let Err(e) = socket.send(f, 0) {
                log::error!("ZeroMQ publisher cannot send: {e}");
            }
        }
    }
}

/// The forwarder of one subscription: takes batches from its queue, formats
/// them and publishes them; runs until the queue is closed (on unsubscribe,
/// expiry or stop).
pub fn forward(p2p: Arc<str>, queue: Queue, out: &Publisher) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut frames = Vec::with_capacity(BATCH);
    let mut reported = 0u64;
    let mut last_report = Instant::now();
    loop {
        batch.clear();
        if !queue.recv_batch(&mut batch, BATCH, None) {
            break;
        }
        for msg in &batch {
            match frame(&p2p, msg) {
                Some(f) => frames.push(f),
                None => log::warn!("Skipping unknown message type '{}' for topic subscription {p2p}.", msg.topic()),
            }
        }
        out.send(&mut frames);
        let dropped = queue.dropped();
        if dropped > reported && last_report.elapsed() >= DROP_REPORT_INTERVAL {
            log::warn!(
                "subscription {p2p}: {} messages dropped because its queue was full ({dropped} in total); \
                 the app does not keep up (see subscriber_queue_size)",
                dropped - reported
            );
            reported = dropped;
            last_report = Instant::now();
        }
    }
    let dropped = queue.dropped();
    if dropped > 0 {
        log::warn!("subscription {p2p} ended; {dropped} messages were dropped in total because its queue was full");
    }
    log::debug!("forwarder of {p2p} stopped");
}
