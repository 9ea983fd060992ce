//! The SUB socket: messages that apps publish into the bus.
//!
//! Frames are `<topic> <json>`, split on the first space. Accepted topics are
//! `stix2/indicator`, `stix2/sighting` (the object's type must match the
//! topic) and `threatbus/snapshotenvelope`. Everything else is logged and
//! dropped; a rejected frame never causes an earlier message to be re-sent
//! (the original's bug).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threatbus_plugin_api::logging::{excerpt, LogLimiter};
use threatbus_plugin_api::{Host, Message, MessageKind, Queue, SendError};

/// The SUB socket's subscriptions, as in the original.
pub const SUB_PREFIXES: [&str; 2] = ["stix2/", "threatbus/snapshotenvelope"];

/// Why a frame was dropped.
#[derive(Debug)]
pub enum Rejected {
    NotUtf8,
    NoSeparator,
    UnknownTopic(String),
    Invalid { topic: String, reason: String },
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::NotUtf8 => f.write_str("frame is not UTF-8"),
            Rejected::NoSeparator => f.write_str("frame has no space between topic and JSON"),
            Rejected::UnknownTopic(t) => write!(
                f,
                "unsupported topic '{t}' (expected stix2/indicator, stix2/sighting or threatbus/snapshotenvelope)"
            ),
            Rejected::Invalid { topic, reason } => write!(f, "invalid message on topic '{topic}': {reason}"),
        }
    }
}

/// The message kind a topic from an app carries (apps never send requests).
fn kind_of(topic: &str) -> Option<MessageKind> {
    MessageKind::from_topic(topic).filter(|k| *k != MessageKind::SNAPSHOT_REQUEST)
}

/// Splits one single-part frame into its topic's message kind, its topic
/// and its JSON.
pub fn split_frame(frame: &[u8]) -> Result<(MessageKind, &str, &str), Rejected> {
    let text = std::str::from_utf8(frame).map_err(|_| Rejected::NotUtf8)?;
    // A byte search: the topic is short, and a space is ASCII.
    let space = text.bytes().position(|b| b == b' ').ok_or(Rejected::NoSeparator)?;
    let (topic, json) = (&text[..space], &text[space + 1..]);
    let kind = kind_of(topic).ok_or_else(|| Rejected::UnknownTopic(topic.to_string()))?;
    Ok((kind, topic, json))
}

/// Decodes one frame and has the host validate it.
pub fn decode_frame(host: &Host, frame: &[u8]) -> Result<Message, Rejected> {
    let (kind, topic, json) = split_frame(frame)?;
    host.parse(kind, json).map_err(|reason| Rejected::Invalid { topic: topic.to_string(), reason })
}

/// Puts a message into `inq`, waiting while it is full but giving up when
/// the plugin stops. Returns false if the message was not accepted.
fn forward(inq: &Queue, msg: Message, stopping: &AtomicBool) -> bool {
    match inq.send_or_stop(msg, stopping) {
        Ok(()) => true,
        Err(SendError::Closed) => false,
        Err(_) => {
            log::warn!("inbound queue full while stopping; a message from an app was not accepted");
            false
        }
    }
}

/// Most frames decoded before they are handed to inq.
const BATCH: usize = 64;

/// The SUB socket's reading side: receives frames, has the host validate
/// them and hands them to `inq`. Runs on its own thread ([`run`]), or on
/// the publisher's thread when sending to `inq` never waits for room.
pub struct Receiver {
    host: Host,
    socket: zmq::Socket,
    inq: Queue,
    stopping: Arc<AtomicBool>,
    frame: zmq::Message,
    limiter: LogLimiter,
    /// True while skipping the remaining parts of a multipart message.
    skipping: bool,
    batch: Vec<Message>,
}

impl Receiver {
    pub fn new(host: Host, socket: zmq::Socket, inq: Queue, stopping: Arc<AtomicBool>) -> Self {
        Receiver {
            host,
            socket,
            inq,
            stopping,
            frame: zmq::Message::new(),
            limiter: LogLimiter::new("invalid messages from apps", Duration::from_secs(10), 20),
            skipping: false,
            batch: Vec::with_capacity(BATCH),
        }
    }

    /// The SUB socket, to poll.
    pub fn socket(&self) -> &zmq::Socket {
        &self.socket
    }

    /// Reads what is there (at most `BATCH` frames) and hands the valid
    /// messages to `inq` together, so that under load the backbone takes
    /// them in batches instead of being woken for every single one; at low
    /// rates a batch is one message and nothing waits. Returns false when
    /// reading must end (the socket failed, or `inq` refused a message
    /// because the plugin stops).
    pub fn drain(&mut self) -> bool {
        let mut ok = true;
        for _ in 0..BATCH {
            match self.socket.recv(&mut self.frame, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    log::error!("ZeroMQ receiver cannot receive: {e}");
                    ok = false;
                    break;
                }
            }
            let more = self.frame.get_more();
            if self.skipping || more {
                if !self.skipping && self.limiter.allow(Instant::now()) {
                    log::warn!(
                        "Dropping a multipart message (apps must send '<topic> <json>' in one frame): {}",
                        excerpt(&self.frame)
                    );
                }
                self.skipping = more;
                continue;
            }
            match decode_frame(&self.host, &self.frame) {
                Ok(msg) => {
                    log::trace!("received {msg:?}");
                    self.batch.push(msg);
                }
                Err(e) => {
                    if self.limiter.allow(Instant::now()) {
                        log::error!("Error decoding message: {e}; frame: {}", excerpt(&self.frame));
                    }
                }
            }
        }
        for msg in self.batch.drain(..) {
            if !forward(&self.inq, msg, &self.stopping) {
                return false;
            }
        }
        ok
    }
}

/// The receiver thread: reads the SUB socket until `wake_fd` becomes
/// readable (the plugin stops).
pub fn run(mut receiver: Receiver, wake_fd: RawFd) {
    loop {
        let mut items = [receiver.socket().as_poll_item(zmq::POLLIN), zmq::PollItem::from_fd(wake_fd, zmq::POLLIN)];
        match zmq::poll(&mut items, -1) {
            Ok(_) => {}
            Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                log::error!("ZeroMQ receiver cannot poll: {e}");
                break;
            }
        }
        let (frames, woken) = (items[0].is_readable(), items[1].is_readable());
        if woken || receiver.stopping.load(Ordering::Relaxed) {
            break;
        }
        if frames && !receiver.drain() {
            break;
        }
    }
    log::debug!("ZeroMQ receiver stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_map_to_kinds() {
        assert_eq!(kind_of("stix2/indicator"), Some(MessageKind::INDICATOR));
        assert_eq!(kind_of("stix2/sighting"), Some(MessageKind::SIGHTING));
        assert_eq!(kind_of("threatbus/snapshotenvelope"), Some(MessageKind::SNAPSHOT_ENVELOPE));
        for bad in [
            "threatbus/snapshotenvelopeX",
            "stix2/",
            "stix2/indicatorX",
            "stix2/malware",
            "threatbus/intel",
            "threatbus/snapshotrequest",
            "",
        ] {
            assert_eq!(kind_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn frames_without_topic_or_utf8_are_rejected() {
        assert!(matches!(split_frame(b"stix2/indicator"), Err(Rejected::NoSeparator)));
        assert!(matches!(split_frame(&[0xff, b' ', b'{', b'}']), Err(Rejected::NotUtf8)));
        assert!(matches!(split_frame(b"threatbus/snapshotenvelopeX {}"), Err(Rejected::UnknownTopic(_))));
        assert!(matches!(split_frame(b"stix2/malware {}"), Err(Rejected::UnknownTopic(_))));
    }
}
