//! The management protocol (REP socket): request parsing, replies, and the
//! registry of p2p subscriptions.
//!
//! Request parsing follows the Python original's `map_management_message`
//! and `SubscriptionManager` decision by decision, so that
//! every existing app sees the same status strings:
//!
//! * not UTF-8, not JSON, not a JSON object, or a `snapshot` that is not an
//!   integer (or numeric string) → `error`;
//! * `action` other than `subscribe`/`unsubscribe`/`heartbeat`, or a missing
//!   or empty (`""`, `[]`, `null`, `0`, `false`) `topic` → `unknown request`;
//! * `heartbeat`/`unsubscribe` of an unknown p2p topic → `error`.
//!
//! Deliberate differences from the original:
//! * a subscribe request is validated completely (every list item a
//!   non-empty string) before anything is subscribed, and a backbone
//!   failure half-way rolls back what was already subscribed: a failed
//!   subscribe leaves no dangling state;
//! * a negative `snapshot` (accepted by the original and passed on as a
//!   negative time delta) means "no snapshot";
//! * an empty string inside a topic list (which would subscribe to every
//!   internal topic) is an `error`.

use crate::metrics::ZmqMetrics;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use threatbus_plugin_api::Queue;

/// Length of a p2p topic, as in the original.
pub const P2P_TOPIC_LEN: usize = 32;

/// The largest `timedelta(days=…)` Python accepts; more is an error there.
const MAX_SNAPSHOT_DAYS: i64 = 999_999_999;

/// A parsed management request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Subscribe one new p2p topic to one or more Threat Bus topics.
    Subscribe { topics: Vec<String>, snapshot: Duration },
    /// Remove the subscription of a p2p topic.
    Unsubscribe { p2p: String },
    /// Keep-alive of a p2p topic.
    Heartbeat { p2p: String },
}

/// The reply for a request that is not executed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// `{"status": "error"}`, with the reason for the log.
    Error(String),
    /// `{"status": "unknown request"}`.
    Unknown,
}

/// `{"status": "success"}` exactly as Python's `json.dumps` writes it.
pub const REPLY_SUCCESS: &str = r#"{"status": "success"}"#;
/// `{"status": "error"}`.
pub const REPLY_ERROR: &str = r#"{"status": "error"}"#;
/// `{"status": "unknown request"}`.
pub const REPLY_UNKNOWN: &str = r#"{"status": "unknown request"}"#;

/// The success reply to a subscription, key order and separators as in the
/// original (`socket.send_json({...})`).
pub fn subscribe_reply(p2p: &str, pub_port: u16, sub_port: u16) -> String {
    format!(r#"{{"topic": "{p2p}", "pub_port": {pub_port}, "sub_port": {sub_port}, "status": "success"}}"#)
}

/// Python truthiness of a decoded JSON value (`bool(x)`): `null`, `false`,
/// `0`, `""`, `[]` and `{}` are false, all else true.
fn python_truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Python's `int(x)` for the JSON values an app can send as `snapshot`.
fn python_int(v: &Value) -> Result<i64, String> {
    match v {
        Value::Bool(b) => Ok(*b as i64),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i)
            } else if n.is_u64() {
                Err(format!("snapshot {n} is too large"))
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_finite() && f.abs() < 9.0e18 {
                    Ok(f.trunc() as i64)
                } else {
                    Err(format!("snapshot {n} is not a finite integer"))
                }
            }
        }
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['+', '-']).unwrap_or(t);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("snapshot {s:?} is not an integer"));
            }
            t.parse::<i64>().map_err(|_| format!("snapshot {s:?} is too large"))
        }
        other => Err(format!("snapshot must be an integer number of days, got {other}")),
    }
}

/// Converts a `snapshot` value (days) into the time delta handed to the bus.
/// Negative values mean "no snapshot".
pub fn snapshot_days(v: &Value) -> Result<Duration, String> {
    let days = python_int(v)?;
    if days.abs() > MAX_SNAPSHOT_DAYS {
        return Err(format!("snapshot of {days} days is out of range"));
    }
    if days < 0 {
        log::warn!("negative snapshot of {days} days requested; treating it as 0 (no snapshot)");
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_secs(days as u64 * 86_400))
}

/// Parses one management request frame.
pub fn parse_request(frame: &[u8]) -> Result<Request, Rejection> {
    let text = std::str::from_utf8(frame).map_err(|e| Rejection::Error(format!("request is not UTF-8: {e}")))?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| Rejection::Error(format!("request is not valid JSON: {e}")))?;
    let obj = value.as_object().ok_or_else(|| Rejection::Error("request is not a JSON object".into()))?;
    // The original converts `snapshot` before looking at the action, so a
    // bad snapshot is an error for every action.
    let snapshot = match obj.get("snapshot") {
        None => Duration::ZERO,
        Some(v) => snapshot_days(v).map_err(Rejection::Error)?,
    };
    let topic = match obj.get("topic") {
        Some(t) if python_truthy(t) => t,
        _ => return Err(Rejection::Unknown),
    };
    let p2p = |t: &Value| match t {
        Value::String(s) => Ok(s.clone()),
        other => Err(Rejection::Error(format!("p2p topic must be a string, got {other}"))),
    };
    match obj.get("action").and_then(Value::as_str) {
        Some("heartbeat") => Ok(Request::Heartbeat { p2p: p2p(topic)? }),
        Some("unsubscribe") => Ok(Request::Unsubscribe { p2p: p2p(topic)? }),
        Some("subscribe") => {
            let topics = match topic {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) if !s.is_empty() => Ok(s.clone()),
                        Value::String(_) => Err(Rejection::Error("empty topic in topic list".into())),
                        other => Err(Rejection::Error(format!("topics must be strings, got {other}"))),
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                other => {
                    return Err(Rejection::Error(format!("topic must be a string or a list of strings, got {other}")))
                }
            };
            Ok(Request::Subscribe { topics, snapshot })
        }
        _ => Err(Rejection::Unknown),
    }
}

/// A p2p topic: 32 lowercase letters from the operating system's CSPRNG
/// (`getrandom`, via `rand::rngs::OsRng`), sampled uniformly.
pub fn random_p2p_topic() -> String {
    threatbus_plugin_api::random::lowercase_letters(P2P_TOPIC_LEN)
}

/// What the registry needs from the bus; implemented by the host handle.
pub trait Bus {
    /// `subscribe_callback`: returns the snapshot id if one was requested.
    fn subscribe(&self, topic: &str, queue: &Queue, snapshot: Duration) -> Result<Option<String>, String>;
    /// `unsubscribe_callback`.
    fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), String>;
}

impl Bus for threatbus_plugin_api::Host {
    fn subscribe(&self, topic: &str, queue: &Queue, snapshot: Duration) -> Result<Option<String>, String> {
        threatbus_plugin_api::Host::subscribe(self, topic, queue, snapshot)
    }
    fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), String> {
        threatbus_plugin_api::Host::unsubscribe(self, topic, queue)
    }
}

/// Counters of one subscription, shared with the publisher thread; every
/// count goes into the plugin's metrics as well.
#[derive(Debug)]
pub struct Stats {
    /// Frames handed to ZeroMQ for the app.
    pub delivered: AtomicU64,
    /// Messages still queued when the subscription was removed or the
    /// plugin stopped, so never sent.
    pub discarded: AtomicU64,
    metrics: ZmqMetrics,
}

/// One app's subscription: one p2p topic and one queue for all its topics.
pub struct Subscription {
    pub p2p: Arc<str>,
    /// The queue's doorbell token.
    pub token: u64,
    pub topics: Vec<String>,
    /// Bounded in messages and bytes; drops newest (counted by the queue).
    pub queue: Queue,
    /// Snapshot ids requested by this subscription (it must not serve them).
    pub snapshot_ids: Vec<String>,
    pub last_heartbeat: Instant,
    /// Subscriptions to the p2p topic on the pub port, minus unsubscriptions.
    pub live: u32,
    /// Whether the queue is subscribed on the bus (it receives messages).
    pub registered: bool,
    /// Since when nobody has been subscribed to the p2p topic; `None` while
    /// somebody is.
    pub idle_since: Option<Instant>,
    /// Whether an app has ever subscribed to the p2p topic.
    pub ever_live: bool,
    pub stats: Arc<Stats>,
}

impl Subscription {
    /// Drops the messages still queued, counting them as discarded.
    fn discard_queued(&self) {
        discard_queued(&self.queue, &self.stats);
    }

    /// One line about what was lost, if anything.
    pub fn loss_summary(&self) -> Option<String> {
        let (line, lost) = self.stats.account(&self.queue);
        lost.then_some(line)
    }
}

impl Stats {
    /// Zero counts that also add to `metrics`.
    pub fn new(metrics: ZmqMetrics) -> Stats {
        Stats { delivered: AtomicU64::new(0), discarded: AtomicU64::new(0), metrics }
    }

    /// Counts `n` frames handed to ZeroMQ.
    pub fn count_delivered(&self, n: u64) {
        self.delivered.fetch_add(n, Ordering::Relaxed);
        self.metrics.sent.add(n);
    }

    /// Counts `n` messages that will never be sent.
    pub fn count_discarded(&self, n: u64) {
        self.discarded.fetch_add(n, Ordering::Relaxed);
        self.metrics.discarded.add(n);
    }

    /// What became of the messages of the subscription with `queue`, and
    /// whether any was lost.
    pub fn account(&self, queue: &Queue) -> (String, bool) {
        let (dropped, discarded) = (queue.dropped(), self.discarded.load(Ordering::Relaxed));
        let line = format!(
            "{} messages delivered, {dropped} dropped because the subscription's queue was full \
             (subscriber_queue_size/subscriber_queue_bytes), {discarded} discarded undelivered",
            self.delivered.load(Ordering::Relaxed)
        );
        (line, dropped + discarded > 0)
    }
}

/// Takes what `queue` still holds and counts it as discarded in `stats`.
pub fn discard_queued(queue: &Queue, stats: &Stats) {
    let mut left = Vec::new();
    while queue.recv_batch(&mut left, 4096, Some(Duration::ZERO)) && !left.is_empty() {
        stats.count_discarded(left.len() as u64);
        left.clear();
    }
}

/// Why a subscribe request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `max_subscriptions` reached.
    Cap(usize),
    /// The bus refused a topic.
    Bus(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Cap(n) => write!(f, "{n} subscriptions exist, the most allowed (max_subscriptions)"),
            Refusal::Bus(e) => f.write_str(e),
        }
    }
}

/// What changed for the publisher when an app subscribed on the pub port.
pub struct Activated {
    pub token: u64,
    pub p2p: Arc<str>,
    pub queue: Queue,
    pub stats: Arc<Stats>,
}

/// All p2p subscriptions.
pub struct Registry {
    subs: HashMap<Arc<str>, Subscription>,
    next_token: u64,
    max: usize,
    /// Subscriptions with `idle_since` set; readable without the registry's
    /// lock through [`Registry::idle_count`].
    idle: Arc<AtomicUsize>,
    metrics: ZmqMetrics,
}

/// Most subscriptions [`Registry::expire_idle`] changes per call, so that
/// the thread calling it never stalls for long.
const IDLE_WORK_PER_CALL: usize = 512;

impl Registry {
    /// An empty registry holding at most `max` subscriptions.
    #[cfg(test)]
    pub fn new(max: usize) -> Self {
        Self::with_metrics(max, ZmqMetrics::detached())
    }

    /// An empty registry holding at most `max` subscriptions, counting into
    /// `metrics`.
    pub fn with_metrics(max: usize, metrics: ZmqMetrics) -> Self {
        Registry { subs: HashMap::new(), next_token: 0, max, idle: Arc::default(), metrics }
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there is no subscription.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// Whether `p2p` is a topic handed out and still subscribed.
    pub fn contains(&self, p2p: &[u8]) -> bool {
        std::str::from_utf8(p2p).is_ok_and(|p| self.subs.contains_key(p))
    }

    /// Subscribes a new p2p topic to `topics` on the bus; `make_queue`
    /// builds its queue for a doorbell token. On any failure, the topics
    /// already subscribed are unsubscribed again and nothing is stored.
    pub fn subscribe(
        &mut self,
        bus: &dyn Bus,
        topics: Vec<String>,
        snapshot: Duration,
        make_queue: impl FnOnce(u64) -> Queue,
        now: Instant,
    ) -> Result<&mut Subscription, Refusal> {
        if self.subs.len() >= self.max {
            self.metrics.refused.inc();
            return Err(Refusal::Cap(self.max));
        }
        let p2p: Arc<str> = loop {
            let t = random_p2p_topic();
            if !self.subs.contains_key(t.as_str()) {
                break t.into();
            }
        };
        self.next_token += 1;
        let token = self.next_token;
        let queue = make_queue(token);
        let mut snapshot_ids = Vec::new();
        for (i, topic) in topics.iter().enumerate() {
            match bus.subscribe(topic, &queue, snapshot) {
                Ok(id) => snapshot_ids.extend(id),
                Err(e) => {
                    for done in &topics[..i] {
                        if let Err(e2) = bus.unsubscribe(done, &queue) {
                            log::error!("rollback of subscription to {done} failed: {e2}");
                        }
                    }
                    queue.close();
                    return Err(Refusal::Bus(format!("cannot subscribe to {topic}: {e}")));
                }
            }
        }
        let sub = Subscription {
            p2p: p2p.clone(),
            token,
            topics,
            queue,
            snapshot_ids,
            last_heartbeat: now,
            live: 0,
            registered: true,
            idle_since: Some(now),
            ever_live: false,
            stats: Arc::new(Stats::new(self.metrics)),
        };
        self.idle.fetch_add(1, Ordering::Relaxed);
        self.metrics.subscriptions.inc();
        Ok(self.subs.entry(p2p).or_insert(sub))
    }

    /// Removes a subscription from the bus and the registry, discards (and
    /// counts) what its queue still holds and closes it. `None` if the p2p
    /// topic is unknown.
    pub fn unsubscribe(&mut self, bus: &dyn Bus, p2p: &str) -> Option<Subscription> {
        let sub = self.subs.remove(p2p)?;
        self.metrics.subscriptions.dec();
        if sub.idle_since.is_some() {
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
        release(bus, &sub);
        Some(sub)
    }

    /// Records a heartbeat; false if the p2p topic is unknown.
    pub fn heartbeat(&mut self, p2p: &str, now: Instant) -> bool {
        match self.subs.get_mut(p2p) {
            Some(s) => {
                s.last_heartbeat = now;
                true
            }
            None => false,
        }
    }

    /// An app subscribed to `p2p` on the pub port. The first one makes the
    /// subscription live: its queue is subscribed on the bus again if it
    /// was not, and the publisher gets what it needs to serve it.
    pub fn attach(&mut self, bus: &dyn Bus, p2p: &str) -> Option<Activated> {
        let s = self.subs.get_mut(p2p)?;
        s.live = s.live.saturating_add(1);
        if s.live > 1 {
            return None;
        }
        if s.idle_since.take().is_some() {
            self.idle.fetch_sub(1, Ordering::Relaxed);
        }
        s.ever_live = true;
        register(bus, s);
        Some(Activated { token: s.token, p2p: s.p2p.clone(), queue: s.queue.clone(), stats: s.stats.clone() })
    }

    /// An app unsubscribed from `p2p` on the pub port (or disconnected).
    /// When nobody is left, the subscription is idle: its queue leaves the
    /// bus, so that it costs nothing while its app is away. Returns whether
    /// it became idle.
    pub fn detach(&mut self, bus: &dyn Bus, p2p: &str, now: Instant) -> bool {
        let Some(s) = self.subs.get_mut(p2p) else { return false };
        if s.live == 0 {
            return false;
        }
        s.live -= 1;
        if s.live > 0 {
            return false;
        }
        s.idle_since = Some(now);
        self.idle.fetch_add(1, Ordering::Relaxed);
        unregister(bus, s);
        true
    }

    /// Applies the idle rules at `now`: a subscription never attached stops
    /// buffering after `grace`; one idle for `idle_timeout` is removed and
    /// returned. Changes at most a bounded number of subscriptions; the
    /// flag says whether more are due.
    pub fn expire_idle(
        &mut self,
        bus: &dyn Bus,
        now: Instant,
        grace: Duration,
        idle_timeout: Option<Duration>,
    ) -> (Vec<Subscription>, bool) {
        let mut gone = Vec::new();
        let mut work = 0;
        for s in self.subs.values_mut() {
            if work == IDLE_WORK_PER_CALL {
                break;
            }
            let Some(since) = s.idle_since else { continue };
            let idle = now.saturating_duration_since(since);
            if idle_timeout.is_some_and(|t| idle >= t) {
                gone.push(s.p2p.clone());
                work += 1;
            } else if !s.ever_live && s.registered && idle >= grace {
                unregister(bus, s);
                work += 1;
            }
        }
        let removed = gone.iter().filter_map(|p| self.unsubscribe(bus, p)).collect();
        (removed, work == IDLE_WORK_PER_CALL)
    }

    /// Whether any subscription is idle (then [`Registry::expire_idle`] has
    /// work to do eventually).
    pub fn any_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed) > 0
    }

    /// The number of idle subscriptions, to read without the lock.
    pub fn idle_count(&self) -> Arc<AtomicUsize> {
        self.idle.clone()
    }

    /// When the oldest heartbeat expires, if any.
    pub fn next_expiry(&self, timeout: Duration) -> Option<Instant> {
        self.subs.values().map(|s| s.last_heartbeat + timeout).min()
    }

    /// Removes every subscription without a heartbeat for `timeout`.
    pub fn expire(&mut self, bus: &dyn Bus, now: Instant, timeout: Duration) -> Vec<Subscription> {
        let dead: Vec<Arc<str>> = self
            .subs
            .values()
            .filter(|s| now.saturating_duration_since(s.last_heartbeat) >= timeout)
            .map(|s| s.p2p.clone())
            .collect();
        dead.iter().filter_map(|p| self.unsubscribe(bus, p)).collect()
    }

    /// The queues a snapshot request goes to: every subscription on the bus
    /// except the one that requested it.
    pub fn snapshot_targets(&self, snapshot_id: &str) -> Vec<(Arc<str>, Queue)> {
        self.subs
            .values()
            .filter(|s| s.registered && !s.snapshot_ids.iter().any(|id| id == snapshot_id))
            .map(|s| (s.p2p.clone(), s.queue.clone()))
            .collect()
    }

    /// Removes every subscription (at shutdown).
    pub fn drain(&mut self, bus: &dyn Bus) -> Vec<Subscription> {
        self.idle.store(0, Ordering::Relaxed);
        let all: Vec<Subscription> = self.subs.drain().map(|(_, s)| s).collect();
        for s in &all {
            release(bus, s);
        }
        all
    }
}

fn register(bus: &dyn Bus, s: &mut Subscription) {
    if s.registered {
        return;
    }
    for t in &s.topics {
        if let Err(e) = bus.subscribe(t, &s.queue, Duration::ZERO) {
            log::error!("cannot subscribe {} to {t} again: {e}", s.p2p);
        }
    }
    s.registered = true;
}

/// Takes the subscription's queue off the bus for each of its topics.
fn unsubscribe_topics(bus: &dyn Bus, s: &Subscription) {
    for t in &s.topics {
        if let Err(e) = bus.unsubscribe(t, &s.queue) {
            log::error!("cannot unsubscribe {} from {t}: {e}", s.p2p);
        }
    }
}

fn unregister(bus: &dyn Bus, s: &mut Subscription) {
    if s.registered {
        unsubscribe_topics(bus, s);
        s.registered = false;
    }
}

fn release(bus: &dyn Bus, sub: &Subscription) {
    if sub.registered {
        unsubscribe_topics(bus, sub);
    }
    sub.discard_queued();
    sub.queue.close();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use threatbus_plugin_api::Overflow;

    fn q10(_token: u64) -> Queue {
        Queue::bounded(10, Overflow::DROP_NEWEST)
    }

    fn req(s: &str) -> Result<Request, Rejection> {
        parse_request(s.as_bytes())
    }

    fn sub(topics: &[&str], days: u64) -> Result<Request, Rejection> {
        Ok(Request::Subscribe {
            topics: topics.iter().map(|s| s.to_string()).collect(),
            snapshot: Duration::from_secs(days * 86_400),
        })
    }

    fn is_error(r: Result<Request, Rejection>) -> bool {
        matches!(r, Err(Rejection::Error(_)))
    }

    #[test]
    fn subscription_without_snapshot_is_zero() {
        assert_eq!(req(r#"{"action": "subscribe", "topic": "some/topic"}"#), sub(&["some/topic"], 0));
    }

    #[test]
    fn subscription_snapshot_is_in_days() {
        assert_eq!(req(r#"{"action": "subscribe", "snapshot": 17, "topic": "some/topic"}"#), sub(&["some/topic"], 17));
    }

    #[test]
    fn numeric_string_snapshot_is_accepted() {
        assert_eq!(req(r#"{"action": "subscribe", "snapshot": "30", "topic": "t"}"#), sub(&["t"], 30));
        assert_eq!(req(r#"{"action": "subscribe", "snapshot": " +30 ", "topic": "t"}"#), sub(&["t"], 30));
    }

    #[test]
    fn float_snapshot_truncates_like_python_int() {
        assert_eq!(req(r#"{"action": "subscribe", "snapshot": 2.9, "topic": "t"}"#), sub(&["t"], 2));
    }

    #[test]
    fn negative_snapshot_means_none() {
        assert_eq!(req(r#"{"action": "subscribe", "snapshot": -5, "topic": "t"}"#), sub(&["t"], 0));
    }

    #[test]
    fn bad_snapshot_is_an_error_for_every_action() {
        assert!(is_error(req(r#"{"action": "subscribe", "snapshot": "FOO", "topic": "t"}"#)));
        assert!(is_error(req(r#"{"action": "heartbeat", "snapshot": "FOO", "topic": "t"}"#)));
        assert!(is_error(req(r#"{"action": "FOO", "snapshot": "FOO"}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "snapshot": "3.5", "topic": "t"}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "snapshot": null, "topic": "t"}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "snapshot": [1], "topic": "t"}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "snapshot": 1000000000, "topic": "t"}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "snapshot": 18446744073709551615, "topic": "t"}"#)));
    }

    #[test]
    fn topic_lists_are_one_request() {
        assert_eq!(
            req(r#"{"action": "subscribe", "topic": ["stix2/indicator", "stix2/sighting"], "snapshot": 0}"#),
            sub(&["stix2/indicator", "stix2/sighting"], 0)
        );
    }

    #[test]
    fn non_string_list_items_are_an_error() {
        assert!(is_error(req(r#"{"action": "subscribe", "topic": ["stix2/indicator", 5]}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "topic": ["stix2/indicator", ""]}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "topic": 5}"#)));
        assert!(is_error(req(r#"{"action": "subscribe", "topic": {"a": 1}}"#)));
    }

    #[test]
    fn unsubscribe_and_heartbeat_take_the_p2p_topic() {
        assert_eq!(req(r#"{"action": "unsubscribe", "topic": "abc"}"#), Ok(Request::Unsubscribe { p2p: "abc".into() }));
        assert_eq!(req(r#"{"action": "heartbeat", "topic": "abc"}"#), Ok(Request::Heartbeat { p2p: "abc".into() }));
        assert!(is_error(req(r#"{"action": "heartbeat", "topic": ["abc"]}"#)));
        assert!(is_error(req(r#"{"action": "unsubscribe", "topic": 7}"#)));
    }

    #[test]
    fn unknown_action_or_missing_topic_is_unknown_request() {
        assert_eq!(req(r#"{"action": "FOO"}"#), Err(Rejection::Unknown));
        assert_eq!(req(r#"{"action": "FOO", "topic": "t"}"#), Err(Rejection::Unknown));
        assert_eq!(req(r#"{"topic": "t"}"#), Err(Rejection::Unknown));
        for action in ["subscribe", "unsubscribe", "heartbeat"] {
            for topic in ["", r#""topic": """#, r#""topic": []"#, r#""topic": null"#, r#""topic": 0"#] {
                let sep = if topic.is_empty() { "" } else { ", " };
                let r = req(&format!(r#"{{"action": "{action}"{sep}{topic}}}"#));
                assert_eq!(r, Err(Rejection::Unknown), "{action} {topic}");
            }
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in ["FOO", "", "[1, 2]", "\"subscribe\"", "null", "{\"action\": "] {
            assert!(is_error(req(bad)), "{bad:?}");
        }
        assert!(is_error(parse_request(&[0xff, 0xfe, b'{', b'}'])));
    }

    #[test]
    fn replies_are_byte_exact() {
        assert_eq!(
            subscribe_reply("pqtmzkwvbeyqxnlcdgfhasjortuyeipw", 13371, 13372),
            r#"{"topic": "pqtmzkwvbeyqxnlcdgfhasjortuyeipw", "pub_port": 13371, "sub_port": 13372, "status": "success"}"#
        );
        for r in [REPLY_SUCCESS, REPLY_ERROR, REPLY_UNKNOWN] {
            let v: Value = serde_json::from_str(r).unwrap();
            assert!(v["status"].is_string());
        }
    }

    #[test]
    fn p2p_topics_are_32_lowercase_letters_and_differ() {
        let a = random_p2p_topic();
        let b = random_p2p_topic();
        assert_eq!(a.len(), P2P_TOPIC_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_lowercase()), "{a}");
        assert_ne!(a, b);
    }

    /// A bus that records calls and refuses one topic, to exercise the
    /// rollback path that a healthy host never takes.
    #[derive(Default)]
    struct RecordingBus {
        refuse: Option<&'static str>,
        calls: Mutex<Vec<String>>,
    }

    impl Bus for RecordingBus {
        fn subscribe(&self, topic: &str, _: &Queue, snapshot: Duration) -> Result<Option<String>, String> {
            self.calls.lock().unwrap().push(format!("+{topic}"));
            if self.refuse == Some(topic) {
                return Err("refused".into());
            }
            Ok((!snapshot.is_zero()).then(|| format!("snap-{topic}")))
        }
        fn unsubscribe(&self, topic: &str, _: &Queue) -> Result<(), String> {
            self.calls.lock().unwrap().push(format!("-{topic}"));
            Ok(())
        }
    }

    #[test]
    fn failed_subscribe_rolls_back_and_stores_nothing() {
        let bus = RecordingBus { refuse: Some("c"), ..Default::default() };
        let mut reg = Registry::new(100);
        let topics = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let err = reg.subscribe(&bus, topics, Duration::ZERO, q10, Instant::now()).err().unwrap();
        assert!(err.to_string().contains("cannot subscribe to c"), "{err}");
        assert!(reg.is_empty());
        assert_eq!(*bus.calls.lock().unwrap(), ["+a", "+b", "+c", "-a", "-b"]);
    }

    #[test]
    fn snapshot_requests_skip_the_requester() {
        let bus = RecordingBus::default();
        let mut reg = Registry::new(100);
        let now = Instant::now();
        let a = reg.subscribe(&bus, vec!["x".into()], Duration::from_secs(86_400), q10, now).unwrap().p2p.clone();
        let b = reg.subscribe(&bus, vec!["y".into()], Duration::ZERO, q10, now).unwrap().p2p.clone();
        let targets: Vec<Arc<str>> = reg.snapshot_targets("snap-x").into_iter().map(|(p, _)| p).collect();
        assert_eq!(targets, vec![b.clone()]);
        assert_eq!(reg.snapshot_targets("other").len(), 2);
        assert!(reg.unsubscribe(&bus, &a).is_some());
        assert!(reg.unsubscribe(&bus, &a).is_none());
    }

    #[test]
    fn heartbeats_keep_subscriptions_alive() {
        let bus = RecordingBus::default();
        let mut reg = Registry::new(100);
        let t0 = Instant::now();
        let timeout = Duration::from_secs(30);
        let a = reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, t0).unwrap().p2p.clone();
        let b = reg.subscribe(&bus, vec!["y".into()], Duration::ZERO, q10, t0).unwrap().p2p.clone();
        assert_eq!(reg.next_expiry(timeout), Some(t0 + timeout));
        assert!(reg.heartbeat(&a, t0 + Duration::from_secs(20)));
        let expired = reg.expire(&bus, t0 + Duration::from_secs(31), timeout);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].p2p, b);
        assert!(expired[0].queue.is_closed());
        assert!(reg.heartbeat(&a, t0 + Duration::from_secs(31)));
        assert!(!reg.heartbeat(&b, t0 + Duration::from_secs(31)));
    }

    #[test]
    fn the_cap_refuses_and_frees_with_removal() {
        let bus = RecordingBus::default();
        let mut reg = Registry::new(2);
        let now = Instant::now();
        let a = reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, now).unwrap().p2p.clone();
        reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, now).unwrap();
        let e = reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, now).err().unwrap();
        assert_eq!(e, Refusal::Cap(2));
        assert!(reg.unsubscribe(&bus, &a).is_some());
        assert!(reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, now).is_ok());
    }

    #[test]
    fn idle_subscriptions_leave_the_bus_and_expire() {
        let bus = RecordingBus::default();
        let mut reg = Registry::new(10);
        let t0 = Instant::now();
        let s = |secs| t0 + Duration::from_secs(secs);
        let (grace, idle) = (Duration::from_secs(10), Some(Duration::from_secs(100)));
        let a = reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, t0).unwrap().p2p.clone();
        let b = reg.subscribe(&bus, vec!["y".into()], Duration::ZERO, q10, t0).unwrap().p2p.clone();
        // a's app connects; b's never does: after the grace b stops buffering.
        assert!(reg.attach(&bus, &a).is_some());
        assert!(reg.attach(&bus, &a).is_none(), "a second subscriber changes nothing");
        assert!(reg.expire_idle(&bus, s(11), grace, idle).0.is_empty());
        assert_eq!(*bus.calls.lock().unwrap(), ["+x", "+y", "-y"]);
        // a's two subscribers leave at 20 s: idle, off the bus.
        assert!(!reg.detach(&bus, &a, s(20)));
        assert!(reg.detach(&bus, &a, s(20)));
        assert!(!reg.detach(&bus, &a, s(21)), "more unsubscriptions than subscriptions are ignored");
        assert_eq!(bus.calls.lock().unwrap().last().unwrap(), "-x");
        // b expires 100 s after it was made; a 100 s after it went idle.
        let gone = reg.expire_idle(&bus, s(100), grace, idle).0;
        assert_eq!(gone.iter().map(|g| g.p2p.clone()).collect::<Vec<_>>(), [b]);
        assert!(gone[0].queue.is_closed());
        // a comes back before its time: on the bus again.
        assert!(reg.attach(&bus, &a).is_some());
        assert_eq!(bus.calls.lock().unwrap().last().unwrap(), "+x");
        assert!(reg.expire_idle(&bus, s(1000), grace, idle).0.is_empty());
        assert!(reg.detach(&bus, &a, s(1000)));
        assert_eq!(reg.expire_idle(&bus, s(1100), grace, idle).0.len(), 1);
        assert!(!reg.any_idle());
        assert!(reg.is_empty());
    }

    #[test]
    fn messages_of_a_removed_idle_subscription_are_counted() {
        let bus = RecordingBus::default();
        let mut reg = Registry::new(10);
        let now = Instant::now();
        let sub = reg.subscribe(&bus, vec!["x".into()], Duration::ZERO, q10, now).unwrap();
        for _ in 0..12 {
            let msg = threatbus_plugin_api::Message::from_validated_json(
                threatbus_plugin_api::MessageKind::INDICATOR,
                "{}".into(),
            );
            let _ = sub.queue.send(msg);
        }
        let p2p = sub.p2p.clone();
        let gone = reg.unsubscribe(&bus, &p2p).unwrap();
        let summary = gone.loss_summary().unwrap();
        assert!(summary.contains("2 dropped") && summary.contains("10 discarded"), "{summary}");
    }
}
