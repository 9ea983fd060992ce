#![forbid(unsafe_code)]
//! Topic-prefix routing shared by backbones: the subscription table and the
//! delivery of one message to every queue subscribed to a prefix of its
//! topic.
//!
//! A queue subscribed under two matching prefixes (e.g. `stix2` and
//! `stix2/indicator`) receives a message once, not twice as in the Python
//! original. Messages are shared (reference-counted), never copied per
//! subscriber.

use std::cell::RefCell;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

use threatbus_plugin_api::{DirectSink, Message, Queue, SendError};

/// Subscriptions by topic prefix. Thread-safe; share it with an `Arc`.
#[derive(Default)]
pub struct Subscriptions {
    /// (topic prefix, subscribed queues), in subscription order.
    topics: RwLock<Vec<(String, Vec<Queue>)>>,
}

impl Subscriptions {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `queue` as a subscriber of every topic starting with `topic`.
    /// Subscribing the same queue to the same topic twice is a no-op.
    pub fn subscribe(&self, topic: &str, queue: Queue) {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        match topics.iter_mut().find(|(t, _)| t == topic) {
            Some((_, queues)) => {
                if !queues.contains(&queue) {
                    queues.push(queue)
                }
            }
            None => topics.push((topic.to_string(), vec![queue])),
        }
    }

    /// Removes the subscription of `queue` to exactly `topic`. Returns
    /// whether there was one; unknown subscriptions are a no-op.
    pub fn unsubscribe(&self, topic: &str, queue: &Queue) -> bool {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        let Some(pos) = topics.iter().position(|(t, _)| t == topic) else {
            return false;
        };
        let before = topics[pos].1.len();
        topics[pos].1.retain(|q| q != queue);
        let removed = topics[pos].1.len() != before;
        if topics[pos].1.is_empty() {
            topics.remove(pos);
        }
        removed
    }

    /// Replaces `out` with every distinct queue subscribed to a prefix of
    /// `topic`. Linear in the number of subscribed queues.
    pub fn matching(&self, topic: &str, out: &mut Vec<Queue>) {
        out.clear();
        let topics = self.topics.read().unwrap_or_else(|e| e.into_inner());
        let mut prefixes = topics.iter().filter(|(prefix, _)| topic.starts_with(prefix.as_str()));
        let Some((_, first)) = prefixes.next() else { return };
        out.extend(first.iter().cloned());
        let mut seen: Option<std::collections::HashSet<usize>> = None;
        for (_, queues) in prefixes {
            // A queue under two matching prefixes gets the message once.
            let seen = seen.get_or_insert_with(|| out.iter().map(Queue::id).collect());
            out.extend(queues.iter().filter(|q| seen.insert(q.id())).cloned());
        }
    }

    /// Whether nobody is subscribed to anything.
    pub fn is_empty(&self) -> bool {
        self.topics.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }
}

/// Delivers one message to one queue. A blocking queue that stays full is
/// retried until `stopping` is set, so nothing is lost silently; a closed
/// queue is skipped; a drop by a `DROP_NEWEST` queue is counted by that
/// queue (its owner reports it).
pub fn deliver(q: &Queue, msg: &Message, stopping: &AtomicBool) {
    match q.send_or_stop(msg.clone(), stopping) {
        Ok(()) | Err(SendError::Dropped) => {}
        Err(SendError::Closed) => log::debug!("subscriber queue {q:?} is closed; message not delivered to it"),
        Err(SendError::Full) => log::warn!("subscriber queue {q:?} stayed full during shutdown; dropped {msg:?}"),
    }
}

/// Delivers `msg` to every queue subscribed to a prefix of its topic
/// ([`deliver`] for each). `scratch` is reused between calls to avoid
/// allocations. Returns the number of subscriber queues it went to.
pub fn provision(subs: &Subscriptions, msg: &Message, stopping: &AtomicBool, scratch: &mut Vec<Queue>) -> usize {
    subs.matching(msg.topic(), scratch);
    if scratch.is_empty() {
        log::debug!("no subscriber for {}", msg.topic());
    }
    for q in scratch.iter() {
        deliver(q, msg, stopping);
    }
    let n = scratch.len();
    scratch.clear();
    n
}

/// Routing on the sender's thread: the [`DirectSink`] of a backbone that
/// offers the host a direct queue. Each message goes to the queues
/// subscribed in `subs` (as [`provision`] does) before the send returns.
pub struct DirectRoute {
    subs: Arc<Subscriptions>,
}

impl DirectRoute {
    /// Routes through `subs`, the table the backbone's subscriptions fill.
    pub fn new(subs: Arc<Subscriptions>) -> Self {
        Self { subs }
    }
}

thread_local! {
    /// The matching queues of the message being routed on this thread,
    /// reused so that routing allocates nothing.
    static SCRATCH: RefCell<Vec<Queue>> = const { RefCell::new(Vec::new()) };
}

impl DirectSink for DirectRoute {
    fn deliver(&self, msg: Message, closed: &AtomicBool) -> Result<(), SendError> {
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => provision(&self.subs, &msg, closed, &mut scratch),
            // Routing from within a delivery (a subscriber queue that is
            // itself direct): a scratch of its own.
            Err(_) => provision(&self.subs, &msg, closed, &mut Vec::new()),
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use threatbus_plugin_api::{MessageKind, Overflow};

    fn msg(kind: MessageKind) -> Message {
        Message::from_validated_json(kind, "{}".to_string())
    }

    #[test]
    fn prefix_match_delivers_once_per_queue() {
        let subs = Subscriptions::new();
        let a = Queue::bounded(10, Overflow::BLOCK);
        let b = Queue::bounded(10, Overflow::BLOCK);
        subs.subscribe("stix2", a.clone());
        subs.subscribe("stix2/indicator", a.clone());
        subs.subscribe("stix2/sighting", b.clone());
        let stop = AtomicBool::new(false);
        let mut scratch = Vec::new();
        assert_eq!(provision(&subs, &msg(MessageKind::INDICATOR), &stop, &mut scratch), 1);
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 0);
        assert_eq!(provision(&subs, &msg(MessageKind::SIGHTING), &stop, &mut scratch), 2);
        assert_eq!(a.len(), 2);
        assert_eq!(b.len(), 1);
        assert_eq!(provision(&subs, &msg(MessageKind::SNAPSHOT_REQUEST), &stop, &mut scratch), 0);
    }

    #[test]
    fn empty_prefix_matches_everything_and_unsubscribe_removes() {
        let subs = Subscriptions::new();
        let a = Queue::bounded(10, Overflow::BLOCK);
        subs.subscribe("", a.clone());
        subs.subscribe("", a.clone());
        let mut out = Vec::new();
        subs.matching("threatbus/snapshotenvelope", &mut out);
        assert_eq!(out.len(), 1);
        assert!(!subs.unsubscribe("stix2", &a), "unknown topic is a no-op");
        assert!(subs.unsubscribe("", &a));
        assert!(subs.is_empty());
        subs.matching("stix2/indicator", &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn closed_and_full_queues_do_not_block_a_stopping_bus() {
        let subs = Subscriptions::new();
        let closed = Queue::bounded(1, Overflow::BLOCK);
        closed.close();
        let full = Queue::bounded(1, Overflow::BLOCK);
        full.try_send(msg(MessageKind::INDICATOR)).unwrap();
        subs.subscribe("stix2", closed);
        subs.subscribe("stix2", full.clone());
        let stop = AtomicBool::new(true);
        let mut scratch = Vec::new();
        assert_eq!(provision(&subs, &msg(MessageKind::INDICATOR), &stop, &mut scratch), 2);
        assert_eq!(full.len(), 1);
    }

    #[test]
    fn a_direct_route_delivers_before_send_returns() {
        let subs = Arc::new(Subscriptions::new());
        let a = Queue::bounded(10, Overflow::BLOCK);
        let b = Queue::bounded(10, Overflow::DROP_NEWEST);
        subs.subscribe("stix2/indicator", a.clone());
        subs.subscribe("stix2", b.clone());
        subs.subscribe("stix2/sighting", b.clone());
        let direct = Queue::direct(DirectRoute::new(subs.clone()));
        direct.send(msg(MessageKind::INDICATOR)).unwrap();
        direct.send(msg(MessageKind::SIGHTING)).unwrap();
        direct.send(msg(MessageKind::SNAPSHOT_REQUEST)).unwrap();
        assert_eq!((a.len(), b.len()), (1, 2), "each queue once per matching message");
        subs.unsubscribe("stix2/indicator", &a);
        direct.send(msg(MessageKind::INDICATOR)).unwrap();
        assert_eq!((a.len(), b.len()), (1, 3));
        direct.close();
        assert_eq!(direct.send(msg(MessageKind::INDICATOR)), Err(SendError::Closed));
        assert_eq!(b.len(), 3);
    }
}
