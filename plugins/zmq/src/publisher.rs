//! The PUB socket: messages the bus delivers to apps.
//!
//! Every subscription has its own bounded queue (filled by the backbone) and
//! a forwarder thread that takes batches from it, formats the frames
//! `<p2p><type> <json>` and hands them over a bounded channel to the single
//! thread that owns the PUB socket (ZeroMQ sockets are not thread-safe).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use threatbus_plugin_api::{Message, MessageKind, Queue};

/// Frames ready for the PUB socket.
pub type Batch = Vec<zmq::Message>;

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

/// The forwarder of one subscription: runs until its queue is closed (on
/// unsubscribe, expiry or stop) or the PUB thread is gone.
pub fn forward(p2p: Arc<str>, queue: Queue, out: Sender<Batch>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut reported = 0u64;
    let mut last_report = Instant::now();
    loop {
        batch.clear();
        if !queue.recv_batch(&mut batch, BATCH, None) {
            break;
        }
        let mut frames = Vec::with_capacity(batch.len());
        for msg in &batch {
            match frame(&p2p, msg) {
                Some(f) => frames.push(f),
                None => log::warn!("Skipping unknown message type '{}' for topic subscription {p2p}.", msg.topic()),
            }
        }
        if out.send(frames).is_err() {
            break;
        }
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

/// The PUB thread: sends every frame it is given until told to stop.
pub fn run(socket: zmq::Socket, batches: Receiver<Batch>, stop: Receiver<()>) {
    loop {
        crossbeam_channel::select! {
            recv(batches) -> b => match b {
                Ok(frames) => {
                    for f in frames {
                        // A PUB socket never blocks: at the high-water mark
                        // ZeroMQ drops the frame for that subscriber.
                        if let Err(e) = socket.send(f, 0) {
                            log::error!("ZeroMQ publisher cannot send: {e}");
                        }
                    }
                }
                Err(_) => break,
            },
            recv(stop) -> _ => break,
        }
    }
    log::debug!("ZeroMQ publisher stopped");
}
