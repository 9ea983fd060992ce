//! The zmq app plugin: wire-compatible with the Python `threatbus-zmq`
//! plugin, so that vast-threatbus, suricata-threatbus,
//! stix-shifter-threatbus, the OpenCTI connector and any other app speaking
//! that protocol work unchanged.
//!
//! Three sockets are bound on `host`:
//!
//! | socket | port key | thread | role |
//! |---|---|---|---|
//! | REP | `manage` (13370) | `zmq-manage` | subscribe / unsubscribe / heartbeat |
//! | XPUB | `pub` (13371) | `zmq-pub` | frames `<p2p><type> <json>` to apps; their subscriptions |
//! | SUB | `sub` (13372) | `zmq-sub` | frames `<topic> <json>` from apps into `inq` |
//!
//! `zmq-monitor` counts the connections of all three and logs floods,
//! accept failures and failed handshakes; `zmq-zap` admits CURVE clients
//! when `curve.allowed_clients` is set.
//!
//! Each subscription owns one bounded queue (messages and bytes,
//! drop-newest, counted) that rings the publisher's doorbell; one thread
//! serves every subscription (see `publisher.rs` for who may read what,
//! and when a subscription is live, idle or gone).
//!
//! ## Configuration (`plugins.apps.zmq`)
//! | key | default | meaning |
//! |---|---|---|
//! | `host` | `127.0.0.1` | address to bind; `0.0.0.0` for all IPv4, `::` for IPv6 |
//! | `manage`, `pub`, `sub` | 13370, 13371, 13372 | ports (0 = any free port; the subscribe reply carries the real one) |
//! | `heartbeat_timeout` | 0 (off) | seconds without heartbeat after which a subscription is removed; apps heartbeat every 5 s |
//! | `idle_timeout` | 300 | seconds without any app subscribed to the p2p topic after which a subscription is removed (0 = never) |
//! | `connect_grace` | 10 | seconds a new subscription buffers before its app subscribes on the pub port |
//! | `max_subscriptions` | 1024 | more subscribe requests get `error` |
//! | `max_topics_per_request`, `max_topic_length` | 16, 256 | limits of one subscribe request (`error` beyond) |
//! | `subscriber_queue_size` | 200000 | messages buffered per subscription before new ones are dropped |
//! | `subscriber_queue_bytes` | 128 MiB | bytes of JSON buffered per subscription before new ones are dropped |
//! | `pub_hwm` | 1000 | frames ZeroMQ holds per connected app; a full pipe stalls only that subscription |
//! | `sub_hwm` | 100000 | ZeroMQ receive high-water mark per publishing app (0 = unlimited) |
//! | `max_frame_size` | 1 MiB | largest frame on the sub port; a larger one closes that connection |
//! | `curve` | off | ZeroMQ CURVE on all three sockets: `public_key_file`, `secret_key_file`, `allowed_clients`, `allowed_clients_file` (see `curve.rs`) |
//!
//! Deliberate differences from the original: the pub port serves only the
//! p2p topics it handed out (the original let an empty prefix read
//! everything), subscriptions end when abandoned, and the limits above.

#![forbid(unsafe_code)]

mod config;
mod curve;
mod management;
mod metrics;
mod monitor;
mod publisher;
mod receiver;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use threatbus_plugin_api::logging::{excerpt, LogLimiter};
use threatbus_plugin_api::{
    export_plugin, spawn_thread, App, Doorbell, Host, Message, Overflow, PluginContext, PluginError, Queue,
};

pub use config::Config;
pub use management::{parse_request, random_p2p_topic, Rejection, Request, P2P_TOPIC_LEN};
pub use publisher::frame;
pub use receiver::{decode_frame, split_frame};

use management::{Refusal, Registry, REPLY_ERROR, REPLY_SUCCESS, REPLY_UNKNOWN};

/// Largest management request frame.
const MAX_MANAGEMENT_FRAME: i64 = 1 << 20;

/// Largest frame on the pub port: a subscription is one byte and a topic,
/// but the bound also applies to handshake commands (CURVE's INITIATE
/// carries several hundred bytes).
const MAX_SUBSCRIPTION_FRAME: i64 = 1024;
use receiver::SUB_PREFIXES;

/// `tcp://host:port`, with brackets for IPv6 literals.
fn endpoint(host: &str, port: u16) -> (String, bool) {
    let ipv6 = host.contains(':');
    if ipv6 && !host.starts_with('[') {
        (format!("tcp://[{host}]:{port}"), true)
    } else {
        (format!("tcp://{host}:{port}"), ipv6)
    }
}

/// Creates a socket, lets `configure` set its options, binds it; returns it
/// with the port actually bound (which differs from `port` when it is 0).
fn bind(
    ctx: &zmq::Context,
    kind: zmq::SocketType,
    what: &str,
    host: &str,
    port: u16,
    configure: impl FnOnce(&zmq::Socket) -> zmq::Result<()>,
) -> Result<(zmq::Socket, u16), PluginError> {
    let (ep, ipv6) = endpoint(host, port);
    let err = |e: zmq::Error| PluginError::new(format!("cannot bind the {what} socket to {ep}: {e}"));
    let s = ctx.socket(kind).map_err(err)?;
    s.set_ipv6(ipv6).map_err(err)?;
    s.set_linger(0).map_err(err)?;
    configure(&s).map_err(err)?;
    s.bind(&ep).map_err(err)?;
    let bound = s
        .get_last_endpoint()
        .ok()
        .and_then(|r| r.ok())
        .and_then(|e| e.rsplit(':').next().and_then(|p| p.parse().ok()))
        .unwrap_or(port);
    Ok((s, bound))
}

/// State shared by the management and publisher threads and
/// [`App::snapshot`].
pub(crate) struct Shared {
    registry: Mutex<Registry>,
    /// Bounds the lines about ended subscriptions (thousands may end at once).
    lines: Mutex<LogLimiter>,
}

impl Shared {
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether one more line about an ended subscription may be logged.
    pub(crate) fn allow_line(&self) -> bool {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now())
    }

    /// Logs what removed subscriptions lost, if anything (the publisher
    /// does this for live ones once it has let go of them), at a bounded
    /// rate, with one total when more than a few ended together.
    pub(crate) fn report_removed(&self, gone: &[management::Subscription]) {
        let lossy: Vec<_> = gone.iter().filter(|s| s.live == 0).filter_map(|s| Some((s, s.loss_summary()?))).collect();
        for (s, loss) in &lossy {
            if self.allow_line() {
                log::warn!("subscription {} ended: {loss}", s.p2p);
            }
        }
        if lossy.len() > 1 {
            let (dropped, discarded) = lossy.iter().fold((0, 0), |(a, b), (s, _)| {
                (a + s.queue.dropped(), b + s.stats.discarded.load(std::sync::atomic::Ordering::Relaxed))
            });
            log::warn!(
                "{} ended subscriptions lost messages: {dropped} dropped because their queues were full, {discarded} \
                 discarded undelivered",
                lossy.len()
            );
        }
    }
}

/// Everything the management thread needs.
struct Manager {
    host: Host,
    cfg: Config,
    shared: Arc<Shared>,
    bell: Arc<Doorbell>,
    pub_port: u16,
    sub_port: u16,
    /// Bounds the log lines about invalid requests.
    invalid: Mutex<LogLimiter>,
    /// Bounds the log lines about refused subscriptions (caps).
    refused: Mutex<LogLimiter>,
}

impl Manager {
    fn handle(&self, frame: &[u8]) -> String {
        let req = match parse_request(frame) {
            Ok(r) => r,
            Err(Rejection::Unknown) => return REPLY_UNKNOWN.into(),
            Err(Rejection::Error(why)) => {
                if self.invalid.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now()) {
                    log::error!("Error handling management message {}: {}", excerpt(frame), excerpt(why.as_bytes()));
                }
                return REPLY_ERROR.into();
            }
        };
        let now = Instant::now();
        match req {
            Request::Subscribe { topics, snapshot } => {
                log::info!(
                    "Received subscription for topic {}, snapshot {} days",
                    excerpt(format!("{topics:?}").as_bytes()),
                    snapshot.as_secs() / 86_400
                );
                if let Err(why) = self.within_limits(&topics) {
                    if self.invalid.lock().unwrap_or_else(|e| e.into_inner()).allow(now) {
                        log::error!("Subscription request refused: {why}");
                    }
                    return REPLY_ERROR.into();
                }
                let (cfg, bell) = (&self.cfg, &self.bell);
                let make_queue = |token| {
                    Queue::builder(cfg.subscriber_queue_size)
                        .overflow(Overflow::DROP_NEWEST)
                        .max_bytes(cfg.subscriber_queue_bytes)
                        .doorbell(bell.clone(), token)
                        .build()
                };
                // The registry stays locked until the reply is ready, so a
                // snapshot request for this subscription, which can reach
                // App::snapshot before host.subscribe returns, waits and then
                // sees who requested it.
                let mut reg = self.shared.registry();
                let sub = match reg.subscribe(&self.host, topics, snapshot, make_queue, now) {
                    Ok(s) => s,
                    Err(e @ Refusal::Cap(_)) => {
                        drop(reg);
                        self.refuse(&e.to_string());
                        return REPLY_ERROR.into();
                    }
                    Err(e) => {
                        log::error!("Error handling subscription request: {e}");
                        return REPLY_ERROR.into();
                    }
                };
                let (p2p, topics) = (sub.p2p.clone(), sub.topics.clone());
                log::info!("Subscription {p2p} added for topics {topics:?} ({} subscriptions)", reg.len());
                management::subscribe_reply(&p2p, self.pub_port, self.sub_port)
            }
            Request::Unsubscribe { p2p } => {
                log::info!("Received unsubscription from topic {p2p}");
                let removed = self.shared.registry().unsubscribe(&self.host, &p2p);
                match removed {
                    Some(s) => {
                        log::info!("Subscription {p2p} removed (topics {:?})", s.topics);
                        self.shared.report_removed(&[s]);
                        REPLY_SUCCESS.into()
                    }
                    None => {
                        log::warn!("No one was subscribed for that topic. Skipping.");
                        REPLY_ERROR.into()
                    }
                }
            }
            Request::Heartbeat { p2p } => {
                if self.shared.registry().heartbeat(&p2p, now) {
                    log::debug!("Heartbeat of {p2p}");
                    REPLY_SUCCESS.into()
                } else {
                    log::debug!("Heartbeat of unknown subscription {p2p}");
                    REPLY_ERROR.into()
                }
            }
        }
    }

    fn expire(&self, timeout: Duration) -> Option<Instant> {
        let mut reg = self.shared.registry();
        let gone = reg.expire(&self.host, Instant::now(), timeout);
        for s in &gone {
            log::warn!(
                "Subscription {} (topics {:?}) expired: no heartbeat for {:?}; unsubscribed",
                s.p2p,
                s.topics,
                timeout
            );
        }
        let next = reg.next_expiry(timeout);
        drop(reg);
        self.shared.report_removed(&gone);
        next
    }

    /// Checks a subscribe request against the configured limits.
    fn within_limits(&self, topics: &[String]) -> Result<(), String> {
        if topics.len() > self.cfg.max_topics_per_request {
            return Err(format!(
                "{} topics in one request, more than max_topics_per_request ({})",
                topics.len(),
                self.cfg.max_topics_per_request
            ));
        }
        match topics.iter().find(|t| t.len() > self.cfg.max_topic_length) {
            Some(t) => Err(format!(
                "a topic of {} bytes, longer than max_topic_length ({}): {}",
                t.len(),
                self.cfg.max_topic_length,
                excerpt(t.as_bytes())
            )),
            None => Ok(()),
        }
    }

    /// Logs a subscribe request refused at the cap (rate-limited: a client
    /// hammering the cap gets one line, then a count).
    fn refuse(&self, why: &str) {
        if self.refused.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now()) {
            log::error!("Subscription request refused: {why}");
        }
    }

    /// The management thread: one reply for every request, whatever it is.
    fn run(self, socket: zmq::Socket, wake_fd: std::os::fd::RawFd, stopping: Arc<AtomicBool>) {
        let timeout = self.cfg.heartbeat_timeout();
        let mut next_expiry: Option<Instant> = None;
        let mut parts: Vec<zmq::Message> = Vec::new();
        loop {
            let wait_ms = match (timeout, next_expiry) {
                (Some(_), Some(t)) => t.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i64 + 1,
                _ => -1,
            };
            let mut items = [socket.as_poll_item(zmq::POLLIN), zmq::PollItem::from_fd(wake_fd, zmq::POLLIN)];
            match zmq::poll(&mut items, wait_ms) {
                Ok(_) | Err(zmq::Error::EINTR) => {}
                Err(e) => {
                    log::error!("ZeroMQ management endpoint cannot poll: {e}");
                    break;
                }
            }
            if items[1].is_readable() || stopping.load(Ordering::Relaxed) {
                break;
            }
            if items[0].is_readable() {
                // A REP socket hands over a whole request (all its parts);
                // after that it must send exactly one reply.
                parts.clear();
                loop {
                    let mut m = zmq::Message::new();
                    match socket.recv(&mut m, zmq::DONTWAIT) {
                        Ok(()) => {
                            let more = m.get_more();
                            parts.push(m);
                            if !more {
                                break;
                            }
                        }
                        Err(zmq::Error::EINTR) => continue,
                        Err(_) => break,
                    }
                }
                if !parts.is_empty() {
                    let reply = if parts.len() == 1 {
                        self.handle(&parts[0])
                    } else {
                        if self.invalid.lock().unwrap_or_else(|e| e.into_inner()).allow(Instant::now()) {
                            log::error!("Error handling management message: {} frames instead of one", parts.len());
                        }
                        REPLY_ERROR.to_string()
                    };
                    if let Err(e) = socket.send(reply.as_bytes(), 0) {
                        log::error!("cannot send management reply: {e}");
                    }
                    // A new subscription may be the next to expire.
                    if let Some(t) = timeout {
                        next_expiry = self.shared.registry().next_expiry(t);
                    }
                }
            }
            if let Some(t) = timeout {
                if next_expiry.is_some_and(|n| Instant::now() >= n) {
                    next_expiry = self.expire(t);
                }
            }
        }
        log::debug!("ZeroMQ management endpoint stopped");
    }
}

/// The running plugin.
pub struct ZmqApp {
    host: Host,
    shared: Arc<Shared>,
    stopping: Arc<AtomicBool>,
    wake: Mutex<UnixStream>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn start(ctx: PluginContext) -> Result<ZmqApp, PluginError> {
    let cfg: Config = ctx.config()?;
    cfg.validate().map_err(|e| threatbus_plugin_api::config::invalid_config(ctx.name(), e))?;
    let host = ctx.host();
    let zctx = zmq::Context::new();
    // Two libzmq I/O threads: the TCP work of the sub port and of the
    // subscribers' connections need not share one (measured: with one
    // thread receiving and publishing, ten subscribers moved more with
    // two I/O threads; see BENCHMARKS.md). Set before any socket exists.
    if let Err(e) = zctx.set_io_threads(2) {
        log::warn!("cannot give ZeroMQ a second I/O thread: {e}");
    }
    let perr = PluginError::new;
    let curve = match &cfg.curve {
        Some(c) => Some(c.load().map_err(|e| threatbus_plugin_api::config::invalid_config(ctx.name(), e))?),
        None => None,
    };
    let keys = curve.as_ref().map(|c| c.keys.clone());
    let secure = |s: &zmq::Socket| keys.as_ref().map_or(Ok(()), |k| curve::apply(s, k));
    // The ZAP handler's socket exists before any CURVE socket is bound.
    let zap = match curve.as_ref().and_then(|c| c.allowed.clone()) {
        Some(allowed) => {
            let s = curve::bind_zap(&zctx).map_err(|e| perr(format!("cannot start the ZAP handler: {e}")))?;
            Some((s, allowed))
        }
        None => None,
    };

    // Bind everything first: a port in use fails start-up with a clear
    // message and no thread left behind.
    let (rep, manage_port) = bind(&zctx, zmq::REP, "management (REP)", &cfg.host, cfg.manage, |s| {
        secure(s)?;
        // Management requests are tiny; refuse huge frames outright.
        s.set_maxmsgsize(MAX_MANAGEMENT_FRAME)
    })?;
    let (pub_sock, pub_port) = bind(&zctx, zmq::XPUB, "publisher (XPUB)", &cfg.host, cfg.pub_port, |s| {
        secure(s)?;
        s.set_sndhwm(cfg.pub_hwm as i32)?;
        // Subscriptions are one byte and a p2p topic.
        s.set_maxmsgsize(MAX_SUBSCRIPTION_FRAME)?;
        // Give frames already handed to ZeroMQ a moment to leave at stop.
        s.set_linger(200)
    })?;
    let mut pub_sock = pub_sock;
    threatbus_zmq_sockopt::set_xpub_manual(&mut pub_sock, true)
        .and_then(|()| threatbus_zmq_sockopt::set_xpub_nodrop(&mut pub_sock, true))
        .map_err(|e| perr(format!("cannot configure the publisher (XPUB) socket: {e}")))?;
    let (sub_sock, sub_port) = bind(&zctx, zmq::SUB, "receiver (SUB)", &cfg.host, cfg.sub, |s| {
        secure(s)?;
        s.set_rcvhwm(cfg.sub_hwm as i32)?;
        s.set_maxmsgsize(cfg.max_frame_size as i64)?;
        SUB_PREFIXES.iter().try_for_each(|p| s.set_subscribe(p.as_bytes()))
    })?;

    let watched = [(&rep, "management"), (&pub_sock, "pub"), (&sub_sock, "sub")]
        .into_iter()
        .map(|(s, name)| monitor::watch(&zctx, s, name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| perr(format!("cannot monitor the sockets: {e}")))?;
    let (wake_rx, wake_tx) = UnixStream::pair().map_err(|e| perr(format!("cannot create a wake-up socket: {e}")))?;
    let stopping = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Shared {
        registry: Mutex::new(Registry::with_metrics(cfg.max_subscriptions, metrics::ZmqMetrics::register(&host))),
        lines: Mutex::new(LogLimiter::new("lines about ended subscriptions", Duration::from_secs(10), 20)),
    });
    let bell = Doorbell::new().map_err(|e| perr(format!("cannot create the publisher's doorbell: {e}")))?;

    let app = ZmqApp {
        host,
        shared: shared.clone(),
        stopping: stopping.clone(),
        wake: Mutex::new(wake_tx),
        threads: Mutex::new(Vec::new()),
    };
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| -> Result<(), PluginError> {
        let h = spawn_thread(host, name, f).map_err(|e| perr(format!("cannot start thread {name}: {e}")))?;
        app.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h);
        Ok(())
    };
    // The wake-up fd stays open as long as `wake_rx` lives; the threads get
    // clones so that each owns its descriptor.
    let clone_fd = || wake_rx.try_clone().map_err(|e| perr(format!("cannot clone the wake-up socket: {e}")));
    let started = (|| {
        if let Some((socket, allowed)) = zap {
            let (st, fd) = (stopping.clone(), clone_fd()?);
            spawn("zmq-zap", Box::new(move || curve::serve_zap(socket, allowed, fd.as_raw_fd(), st)))?;
        }
        let (st, fd) = (stopping.clone(), clone_fd()?);
        spawn("zmq-monitor", Box::new(move || monitor::run(watched, fd.as_raw_fd(), st)))?;
        let publisher = publisher::Publisher::new(
            host,
            shared.clone(),
            pub_sock,
            bell.clone(),
            cfg.connect_grace(),
            cfg.idle_timeout(),
        );
        let inq = host.inq();
        let receiver = receiver::Receiver::new(host, sub_sock, inq.clone(), stopping.clone());
        let (st, fd) = (stopping.clone(), clone_fd()?);
        if inq.never_full() {
            // Routing happens on the sending thread and never waits for
            // room in inq: one thread receives, routes and publishes.
            log::debug!("one thread (zmq-io) receives and publishes: sending to inq never waits for room");
            let io = publisher.with_inbound(receiver);
            spawn("zmq-io", Box::new(move || io.run(fd.as_raw_fd(), st)))?;
        } else {
            let rfd = clone_fd()?;
            spawn("zmq-sub", Box::new(move || receiver::run(receiver, rfd.as_raw_fd())))?;
            spawn("zmq-pub", Box::new(move || publisher.run(fd.as_raw_fd(), st)))?;
        }
        let invalid = Mutex::new(LogLimiter::new("invalid management requests", Duration::from_secs(10), 20));
        let refused = Mutex::new(LogLimiter::new("subscription requests over the cap", Duration::from_secs(60), 1));
        let manager =
            Manager { host, cfg: cfg.clone(), shared: shared.clone(), bell, pub_port, sub_port, invalid, refused };
        let (st, fd) = (stopping.clone(), clone_fd()?);
        spawn("zmq-manage", Box::new(move || manager.run(rep, fd.as_raw_fd(), st)))?;
        Ok(())
    })();
    if let Err(e) = started {
        let _ = app.stop();
        return Err(e);
    }
    drop(wake_rx);
    log::info!(
        "ZeroMQ app plugin started: management tcp://{h}:{manage_port}, pub {pub_port}, sub {sub_port}{}{}",
        match cfg.heartbeat_timeout() {
            Some(t) => format!(", subscriptions expire after {t:?} without heartbeat"),
            None => String::new(),
        },
        match &curve {
            Some(c) => match &c.allowed {
                Some(a) => format!(", CURVE on ({} allowed client keys)", a.len()),
                None => ", CURVE on (any client with the server key)".to_string(),
            },
            None => String::new(),
        },
        h = cfg.host,
    );
    Ok(app)
}

impl App for ZmqApp {
    /// Forwards a snapshot request to every zmq subscriber except the one
    /// that asked for it; their apps answer with envelopes on the SUB socket.
    fn snapshot(&self, request: &Message) -> Result<(), PluginError> {
        /// The one field of a (host-validated) snapshot request needed here.
        #[derive(serde::Deserialize)]
        struct Request {
            snapshot_id: String,
        }
        let req: Request = serde_json::from_str(request.json())
            .map_err(|e| PluginError::new(format!("invalid snapshot request: {e}")))?;
        let targets = self.shared.registry().snapshot_targets(&req.snapshot_id);
        log::debug!("Forwarding snapshot request {} to {} zmq subscribers", req.snapshot_id, targets.len());
        for (p2p, q) in targets {
            if let Err(e) = q.try_send(request.clone()) {
                log::warn!("snapshot request {} not delivered to {p2p}: {e}", req.snapshot_id);
            }
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        self.stopping.store(true, Ordering::SeqCst);
        // One byte makes the wake-up fd readable for every poller, for good.
        let _ = self.wake.lock().unwrap_or_else(|e| e.into_inner()).write_all(&[1]);
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in threads {
            let _ = h.join();
        }
        // No more requests and no publisher (it sent what it could): remove
        // every subscription from the bus.
        let subs = self.shared.registry().drain(&self.host);
        self.shared.report_removed(&subs);
        log::info!("ZeroMQ app plugin stopped");
        Ok(())
    }
}

impl Drop for ZmqApp {
    fn drop(&mut self) {
        if !self.stopping.load(Ordering::SeqCst) {
            let _ = self.stop();
        }
    }
}

export_plugin!(app, "zmq", start);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(json: &str) -> Result<Config, PluginError> {
        threatbus_plugin_api::config::parse_plugin_config("zmq", json)
    }

    #[test]
    fn empty_section_gives_python_defaults() {
        let c = cfg("null").unwrap();
        assert_eq!((c.host.as_str(), c.manage, c.pub_port, c.sub), ("127.0.0.1", 13370, 13371, 13372));
        assert_eq!(c.heartbeat_timeout(), None);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn python_keys_are_accepted_and_unknown_keys_named() {
        let c = cfg(r#"{"host": "0.0.0.0", "manage": 1, "pub": 2, "sub": 3, "heartbeat_timeout": 1.5}"#).unwrap();
        assert_eq!((c.manage, c.pub_port, c.sub), (1, 2, 3));
        assert_eq!(c.heartbeat_timeout(), Some(Duration::from_millis(1500)));
        let e = cfg(r#"{"mange": 1}"#).unwrap_err();
        assert!(e.message.contains("mange"), "{e}");
        let e = cfg(r#"{"pub": "x"}"#).unwrap_err();
        assert!(e.message.contains("pub"), "{e}");
    }

    #[test]
    fn invalid_values_are_refused() {
        assert!(cfg(r#"{"heartbeat_timeout": -1}"#).unwrap().validate().is_err());
        assert!(cfg(r#"{"subscriber_queue_size": 0}"#).unwrap().validate().is_err());
        assert!(cfg(r#"{"pub_hwm": 4294967295}"#).unwrap().validate().is_err());
        assert!(cfg(r#"{"host": ""}"#).unwrap().validate().is_err());
    }

    #[test]
    fn ipv6_hosts_get_brackets() {
        assert_eq!(endpoint("::1", 5), ("tcp://[::1]:5".to_string(), true));
        assert_eq!(endpoint("127.0.0.1", 5), ("tcp://127.0.0.1:5".to_string(), false));
        assert_eq!(endpoint("*", 5), ("tcp://*:5".to_string(), false));
    }
}
