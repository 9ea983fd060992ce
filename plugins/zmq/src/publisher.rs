//! The pub port: one XPUB socket and the one thread (`zmq-pub`) that owns
//! it.
//!
//! * Apps subscribe to their p2p topic on this socket. The socket runs in
//!   ZeroMQ's manual mode: every subscription reaches this thread, which
//!   applies only exact p2p topics that the management port handed out and
//!   that are still subscribed. An empty or foreign prefix is refused, so
//!   nobody reads another app's traffic and nobody can grow ZeroMQ's
//!   subscription table.
//! * The first app subscribed to a p2p topic makes its subscription live
//!   ([`Registry::attach`]); when the last one leaves (or disconnects) it
//!   turns idle and its queue leaves the bus, so idle subscriptions cost
//!   nothing per message. Idle ones are removed after `idle_timeout`.
//! * Every subscription's queue rings this thread's [`Doorbell`] when it
//!   turns non-empty; the thread sends frames `<p2p><type> <json>` of live
//!   subscriptions only. The socket never drops silently (`XPUB_NODROP`): a
//!   subscriber at its high-water mark stalls its own subscription, whose
//!   queue then fills and drops new messages, counted per subscription.
//! * When sending to `inq` never waits for room (the host gave the plugin
//!   a backbone's direct queue), this thread also reads the SUB socket
//!   ([`Receiver`]): a message from an app is then received, validated,
//!   routed into the subscribers' queues and sent on the XPUB socket by
//!   one thread, without a hand-off. Otherwise the receiver runs on a
//!   thread of its own, so that a full `inq` never stalls the subscribers.

use std::collections::{HashMap, VecDeque};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threatbus_plugin_api::logging::{excerpt, LogLimiter};
use threatbus_plugin_api::{Doorbell, Host, Message, MessageKind, Queue};

use crate::management::{discard_queued, Activated, Stats};
use crate::receiver::Receiver;
use crate::Shared;

/// Most messages sent for one subscription before the others get a turn.
const BATCH: usize = 512;

/// How often a subscription's new drops are logged while it keeps dropping.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// How often a stalled subscriber is tried again.
const STALL_RETRY: Duration = Duration::from_millis(5);

/// How often the idle rules are applied while a subscription is idle.
const IDLE_TICK: Duration = Duration::from_millis(500);

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

/// A live subscription as the publisher serves it.
struct Outlet {
    p2p: Arc<str>,
    queue: Queue,
    stats: Arc<Stats>,
    /// Taken from the queue, not yet accepted by ZeroMQ.
    held: VecDeque<Message>,
    reported_drops: u64,
    last_report: Instant,
}

/// What one turn of a subscription ended with.
#[derive(PartialEq, Eq, Debug)]
enum Turn {
    /// Its queue is empty for now.
    Empty,
    /// More is waiting; it had its share of this round.
    More,
    /// Its app's ZeroMQ pipe is full.
    Stalled,
    /// Its queue is closed and everything was sent.
    Finished,
}

/// The `zmq-pub` thread's state.
pub struct Publisher {
    host: Host,
    shared: Arc<Shared>,
    socket: zmq::Socket,
    bell: Arc<Doorbell>,
    grace: Duration,
    idle_timeout: Option<Duration>,
    outlets: HashMap<u64, Outlet>,
    /// Tokens of outlets with more to send (or stalled).
    pending: Vec<u64>,
    /// Reused for every batch taken from a queue.
    batch: Vec<Message>,
    refused: LogLimiter,
    drop_lines: LogLimiter,
    send_errors: LogLimiter,
    /// The SUB socket's reader, when this thread also receives.
    inbound: Option<Receiver>,
}

impl Publisher {
    pub fn new(
        host: Host,
        shared: Arc<Shared>,
        socket: zmq::Socket,
        bell: Arc<Doorbell>,
        grace: Duration,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Publisher {
            host,
            shared,
            socket,
            bell,
            grace,
            idle_timeout,
            outlets: HashMap::new(),
            pending: Vec::new(),
            batch: Vec::with_capacity(BATCH),
            refused: LogLimiter::new("refused subscriptions on the pub port", Duration::from_secs(10), 10),
            drop_lines: LogLimiter::new("lines about dropped messages", Duration::from_secs(10), 20),
            send_errors: LogLimiter::new("send errors on the pub port", Duration::from_secs(10), 5),
            inbound: None,
        }
    }

    /// This thread also reads the SUB socket with `receiver`.
    pub fn with_inbound(mut self, receiver: Receiver) -> Self {
        self.inbound = Some(receiver);
        self
    }

    /// Runs until `wake_fd` becomes readable (the plugin stops).
    pub fn run(mut self, wake_fd: RawFd, stopping: Arc<AtomicBool>) {
        let idle = self.shared.registry().idle_count();
        let mut rung = Vec::new();
        let mut next_idle_check = Instant::now();
        loop {
            let stalled = self.pending.iter().any(|t| self.outlets.get(t).is_some_and(|o| !o.held.is_empty()));
            let busy = self.pending.iter().any(|t| self.outlets.get(t).is_some_and(|o| o.held.is_empty()));
            let wait_ms: i64 = if busy {
                0
            } else if stalled {
                STALL_RETRY.as_millis() as i64
            } else if idle.load(Ordering::Relaxed) > 0 {
                next_idle_check.saturating_duration_since(Instant::now()).as_millis() as i64
            } else {
                -1
            };
            let mut items = [
                self.socket.as_poll_item(zmq::POLLIN),
                zmq::PollItem::from_fd(self.bell.fd(), zmq::POLLIN),
                zmq::PollItem::from_fd(wake_fd, zmq::POLLIN),
                match &self.inbound {
                    Some(r) => r.socket().as_poll_item(zmq::POLLIN),
                    None => zmq::PollItem::from_fd(-1, zmq::PollEvents::empty()),
                },
            ];
            let polled = if self.inbound.is_some() { 4 } else { 3 };
            match zmq::poll(&mut items[..polled], wait_ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => {
                    log::error!("ZeroMQ publisher cannot poll: {e}");
                    break;
                }
            }
            let (events, woken) = (items[0].is_readable(), items[2].is_readable());
            let frames = polled == 4 && items[3].is_readable();
            if woken || stopping.load(Ordering::Relaxed) {
                break;
            }
            if events {
                self.on_subscription_events();
            }
            if frames && !self.inbound.as_mut().is_some_and(Receiver::drain) {
                break;
            }
            rung.clear();
            self.bell.take(&mut rung);
            rung.append(&mut self.pending);
            rung.sort_unstable();
            rung.dedup();
            for &token in &rung {
                match self.turn(token) {
                    Turn::Empty => {}
                    Turn::More | Turn::Stalled => self.pending.push(token),
                    Turn::Finished => self.finish(token),
                }
            }
            let now = Instant::now();
            if now >= next_idle_check {
                let more = self.apply_idle_rules(now);
                next_idle_check = if more { now } else { now + IDLE_TICK };
            }
        }
        self.flush_at_stop();
        if self.inbound.is_some() {
            log::debug!("ZeroMQ receiver stopped");
        }
        log::debug!("ZeroMQ publisher stopped");
    }

    /// Handles every subscription message waiting on the XPUB socket.
    fn on_subscription_events(&mut self) {
        loop {
            let msg = match self.socket.recv_msg(zmq::DONTWAIT) {
                Ok(m) => m,
                Err(zmq::Error::EINTR) => continue,
                Err(zmq::Error::EAGAIN) => break,
                Err(e) => {
                    log::error!("ZeroMQ publisher cannot read subscriptions: {e}");
                    break;
                }
            };
            let now = Instant::now();
            match msg.split_first() {
                Some((1, topic)) => {
                    let mut reg = self.shared.registry();
                    if !reg.contains(topic) {
                        drop(reg);
                        if self.refused.allow(now) {
                            log::warn!(
                                "refused a subscription to {} on the pub port: not a p2p topic handed out by the \
                                 management port (apps subscribe to the topic of their subscribe reply)",
                                excerpt(topic)
                            );
                        }
                        continue;
                    }
                    // Applies to the pipe the subscription came from; must
                    // happen before the next receive.
                    if let Err(e) = self.socket.set_subscribe(topic) {
                        log::error!("cannot apply the subscription to {}: {e}", excerpt(topic));
                        continue;
                    }
                    let p2p = String::from_utf8_lossy(topic).into_owned();
                    if let Some(a) = reg.attach(&self.host, &p2p) {
                        drop(reg);
                        log::info!("an app subscribed to {p2p} on the pub port; its subscription is live");
                        self.activate(a);
                    }
                }
                Some((0, topic)) => {
                    // Keeps ZeroMQ's table in step (a no-op for topics never
                    // applied, and for pipes already gone).
                    let _ = self.socket.set_unsubscribe(topic);
                    let p2p = String::from_utf8_lossy(topic);
                    let mut reg = self.shared.registry();
                    if reg.detach(&self.host, &p2p, now) {
                        drop(reg);
                        log::info!("no app is subscribed to {p2p} any more; its subscription is idle");
                        self.deactivate(&p2p);
                    }
                }
                _ => {
                    if self.refused.allow(now) {
                        log::warn!("ignored a message on the pub port that is no subscription: {}", excerpt(&msg));
                    }
                }
            }
        }
    }

    fn activate(&mut self, a: Activated) {
        let token = a.token;
        self.outlets.insert(
            token,
            Outlet {
                p2p: a.p2p,
                reported_drops: a.queue.dropped(),
                queue: a.queue,
                stats: a.stats,
                held: VecDeque::new(),
                last_report: Instant::now(),
            },
        );
        self.pending.push(token);
    }

    /// The last app left: what was taken but not sent goes back to nobody
    /// and is counted; what is queued stays for a returning app.
    fn deactivate(&mut self, p2p: &str) {
        let token = self.outlets.iter().find(|(_, o)| &*o.p2p == p2p).map(|(t, _)| *t);
        if let Some(o) = token.and_then(|t| self.outlets.remove(&t)) {
            o.stats.count_discarded(o.held.len() as u64);
        }
    }

    /// Sends up to one batch of a live subscription's messages.
    fn turn(&mut self, token: u64) -> Turn {
        let Some(o) = self.outlets.get_mut(&token) else { return Turn::Empty };
        if o.queue.is_closed() {
            // Removed: whatever is left was discarded by the registry.
            return Turn::Finished;
        }
        let mut sent = 0;
        loop {
            while let Some(m) = o.held.front() {
                let Some(f) = frame(&o.p2p, m) else {
                    log::warn!("Skipping unknown message type '{}' for topic subscription {}.", m.topic(), o.p2p);
                    o.held.pop_front();
                    continue;
                };
                match self.socket.send(f, zmq::DONTWAIT) {
                    Ok(()) => {
                        o.held.pop_front();
                        sent += 1;
                    }
                    Err(zmq::Error::EAGAIN) => {
                        report_drops(o, &mut self.drop_lines);
                        o.stats.count_delivered(sent);
                        return Turn::Stalled;
                    }
                    Err(zmq::Error::EINTR) => {}
                    Err(e) => {
                        if self.send_errors.allow(Instant::now()) {
                            log::error!("ZeroMQ publisher cannot send to {}: {e}; message discarded", o.p2p);
                        }
                        o.held.pop_front();
                        o.stats.count_discarded(1);
                    }
                }
            }
            if sent >= BATCH as u64 {
                o.stats.count_delivered(sent);
                report_drops(o, &mut self.drop_lines);
                return Turn::More;
            }
            let open = o.queue.recv_batch(&mut self.batch, BATCH, Some(Duration::ZERO));
            if self.batch.is_empty() {
                o.stats.count_delivered(sent);
                report_drops(o, &mut self.drop_lines);
                return if open { Turn::Empty } else { Turn::Finished };
            }
            o.held.extend(self.batch.drain(..));
        }
    }

    /// A subscription was removed while live: what the publisher still
    /// held is discarded, and the account is logged.
    fn finish(&mut self, token: u64) {
        if let Some(o) = self.outlets.remove(&token) {
            o.stats.count_discarded(o.held.len() as u64);
            log_account(&o);
        }
    }

    /// Returns whether more work is due right away.
    fn apply_idle_rules(&mut self, now: Instant) -> bool {
        let mut reg = self.shared.registry();
        if !reg.any_idle() {
            return false;
        }
        let (gone, more) = reg.expire_idle(&self.host, now, self.grace, self.idle_timeout);
        drop(reg);
        for s in &gone {
            if self.shared.allow_line() {
                log::warn!(
                    "Subscription {} (topics {:?}) removed: no app subscribed to its p2p topic for {:?} (idle_timeout)",
                    s.p2p,
                    s.topics,
                    self.idle_timeout.unwrap_or_default()
                );
            }
        }
        self.shared.report_removed(&gone);
        more
    }

    /// At stop: one last non-blocking pass, then whatever is left is
    /// counted as discarded.
    fn flush_at_stop(&mut self) {
        let tokens: Vec<u64> = self.outlets.keys().copied().collect();
        for t in tokens {
            let _ = self.turn(t);
            if let Some(o) = self.outlets.remove(&t) {
                discard_queued(&o.queue, &o.stats);
                o.stats.count_discarded(o.held.len() as u64);
                log_account(&o);
            }
        }
    }
}

/// Logs a finished subscription's account if it lost anything; at debug
/// level otherwise.
fn log_account(o: &Outlet) {
    let (account, lost) = o.stats.account(&o.queue);
    if lost {
        log::warn!("subscription {} ended: {account}", o.p2p);
    } else {
        log::debug!("subscription {} ended: {account}", o.p2p);
    }
}

/// Logs new drops of a subscription's queue, at most once per interval per
/// subscription and at a bounded rate overall.
fn report_drops(o: &mut Outlet, limiter: &mut LogLimiter) {
    let dropped = o.queue.dropped();
    if dropped > o.reported_drops && o.last_report.elapsed() >= DROP_REPORT_INTERVAL {
        let now = Instant::now();
        if limiter.allow(now) {
            log::warn!(
                "subscription {}: {} messages dropped because its queue was full ({dropped} in total); the app does \
                 not keep up (see subscriber_queue_size and subscriber_queue_bytes)",
                o.p2p,
                dropped - o.reported_drops
            );
        }
        o.reported_drops = dropped;
        o.last_report = now;
    }
}
