//! The RabbitMQ backbone: several Threat Bus hosts share one message stream
//! through a RabbitMQ fanout exchange, wire-compatible with the Python
//! `threatbus-rabbitmq` plugin (same exchange, queue name, queue arguments
//! and bare JSON bodies dispatched on their `type` field).
//!
//! ## Topology
//! * a **fanout** exchange `exchange_name` (default `threatbus`), non-durable
//!   like pika's default unless `exchange_durable: true`;
//! * one queue per host, `"threatbus" + queue.name_join_symbol +
//!   queue.name_suffix`, declared with `durable`, `exclusive`, `auto_delete`
//!   and the arguments `x-queue-mode` (`lazy`/`default`) and `x-max-length`
//!   (only when `max_items` != 0), bound with an empty routing key.
//!
//! Every message taken from `inq` is published to the exchange; every
//! message consumed from this host's queue is routed by topic prefix to the
//! subscribed queues. Local delivery goes through RabbitMQ, as in the
//! original.
//!
//! ## What it fixes
//! * Heartbeats are serviced while idle (lapin's I/O loop).
//! * Both connections reconnect with exponential backoff
//!   (`reconnect_delay` .. `reconnect_max_delay`) after a broker restart or
//!   a dropped connection.
//! * Publisher confirms: a message taken from `inq` is released only when
//!   the broker confirmed it; unconfirmed, nacked or unroutable messages are
//!   published again (at-least-once: a message may arrive twice after a
//!   reconnect, never zero times while the bus runs).
//! * `persistent` (delivery mode 2, default = `queue.durable`) and
//!   `exchange_durable` make a durable setup survive broker restarts.
//! * Undecodable deliveries are logged and rejected (`requeue=false`), so a
//!   dead-letter exchange configured by policy receives them.
//! * Shutdown drains `inq`, waits for confirms (at most
//!   `shutdown_timeout`), and closes channels and connections cleanly.
//!
//! ## Threads
//! `rabbitmq-runtime` runs a current-thread tokio runtime with the publisher
//! and consumer tasks (lapin adds its own I/O thread); `rabbitmq-inq` moves
//! messages from the blocking `inq` into the runtime; `rabbitmq-provisioner`
//! delivers consumed messages into subscriber queues (which may block) and
//! hands the acknowledgements back. No tokio handle leaves this library.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use threatbus_plugin_api::{export_plugin, spawn_thread, Backbone, Counter, Host, PluginContext, PluginError, Queue};
use threatbus_routing::Subscriptions;

pub mod config;
mod consumer;
mod publisher;
mod util;

use config::Config;

/// Counters, logged at shutdown and reported to the host's metrics.
pub(crate) struct Stats {
    /// Messages taken from `inq`.
    pub taken: Counter,
    /// Publishes sent to the broker (first sends and repeats).
    pub published: Counter,
    /// Publishes confirmed by the broker.
    pub confirmed: Counter,
    /// Publishes repeated after a reconnect, nack or return.
    pub republished: Counter,
    /// Deliveries consumed and routed.
    pub consumed: Counter,
    /// Deliveries rejected as undecodable.
    pub rejected: Counter,
    /// Connections (re)established.
    pub connects: Counter,
    /// Reconnection attempts after a failed or lost connection.
    pub reconnects: Counter,
}

impl Stats {
    fn register(host: &Host) -> Stats {
        let c = |name: &str, help: &str| host.counter(name, help, &[]);
        Stats {
            taken: c("rabbitmq_taken", "Messages the rabbitmq backbone took from the inbound queue"),
            published: c("rabbitmq_published", "Publishes sent to the broker, first sends and repeats"),
            confirmed: c("rabbitmq_confirmed", "Publishes the broker confirmed"),
            republished: c("rabbitmq_republished", "Publishes repeated after a reconnect, nack or return"),
            consumed: c("rabbitmq_consumed", "Deliveries consumed from the broker and routed to subscribers"),
            rejected: c("rabbitmq_rejected", "Deliveries rejected as undecodable"),
            connects: c("rabbitmq_connects", "Connections to the broker established (publisher and consumer)"),
            reconnects: c("rabbitmq_reconnects", "Reconnection attempts after a failed or lost connection"),
        }
    }
}

/// State shared by the threads and the host-facing object.
pub(crate) struct Shared {
    pub host: Host,
    pub cfg: Config,
    pub queue_name: String,
    pub subs: Subscriptions,
    pub stopping: AtomicBool,
    pub stats: Stats,
}

/// The backbone object handed to the host.
pub struct RabbitMq {
    shared: Arc<Shared>,
    inq: Queue,
    shutdown: tokio::sync::watch::Sender<Option<std::time::Instant>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

fn start(ctx: PluginContext) -> Result<RabbitMq, PluginError> {
    let mut cfg: Config = ctx.config()?;
    cfg.validate()
        .and_then(|()| cfg.resolve_password())
        .and_then(|()| cfg.tls_config().map(drop))
        .map_err(|e| threatbus_plugin_api::config::invalid_config(ctx.name(), e))?;
    let queue_name = cfg.queue_name();
    let shared = Arc::new(Shared {
        host: ctx.host(),
        cfg,
        queue_name,
        subs: Subscriptions::new(),
        stopping: AtomicBool::new(false),
        stats: Stats::register(&ctx.host()),
    });
    let host = ctx.host();
    let inq = ctx.inq();
    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(None);
    let window = usize::from(shared.cfg.max_unconfirmed);
    let (pub_tx, pub_rx) = tokio::sync::mpsc::channel(window.max(256));
    let (deliver_tx, deliver_rx) = tokio::sync::mpsc::unbounded_channel();
    let (ack_tx, ack_rx) = tokio::sync::mpsc::unbounded_channel();

    let thread_err = |e: std::io::Error| PluginError::new(format!("cannot start thread: {e}"));
    let mut threads = Vec::new();
    {
        let (inq, shared) = (inq.clone(), shared.clone());
        threads.push(
            spawn_thread(host, "rabbitmq-inq", move || publisher::forward_inq(inq, pub_tx, shared))
                .map_err(thread_err)?,
        );
    }
    {
        let shared = shared.clone();
        threads.push(
            spawn_thread(host, "rabbitmq-provisioner", move || consumer::provisioner(deliver_rx, ack_tx, shared))
                .map_err(thread_err)?,
        );
    }
    {
        let shared = shared.clone();
        threads.push(
            spawn_thread(host, "rabbitmq-runtime", move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cannot build the tokio runtime of the rabbitmq backbone");
                rt.block_on(async move {
                    let publisher = tokio::spawn(publisher::run(shared.clone(), pub_rx, shutdown_rx.clone()));
                    let consumer = tokio::spawn(consumer::run(shared.clone(), deliver_tx, ack_rx, shutdown_rx));
                    for (what, task) in [("publisher", publisher), ("consumer", consumer)] {
                        if let Err(e) = task.await {
                            if e.is_panic() {
                                std::panic::resume_unwind(e.into_panic());
                            }
                            log::error!("RabbitMQ {what} task ended abnormally: {e}");
                        }
                    }
                });
                // Closing the connections above ended lapin's I/O threads;
                // do not wait for stray timers.
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(thread_err)?,
        );
    }
    log::info!("RabbitMQ backbone started.");
    log::info!(
        "RabbitMQ backbone: exchange '{}', queue '{}' at {}",
        shared.cfg.exchange_name,
        shared.queue_name,
        shared.cfg.endpoint()
    );
    Ok(RabbitMq { shared, inq, shutdown, threads: Mutex::new(threads) })
}

impl Backbone for RabbitMq {
    fn subscribe(&self, topic: &str, queue: Queue) -> Result<(), PluginError> {
        log::info!("Adding subscription to: {topic}");
        self.shared.subs.subscribe(topic, queue);
        Ok(())
    }

    fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), PluginError> {
        log::info!("Removing subscription from: {topic}");
        self.shared.subs.unsubscribe(topic, queue);
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        // The host closed inq after stopping the apps; what is left in it is
        // still published (and confirmed) before the connections close.
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.inq.close();
        let _ = self.shutdown.send(Some(std::time::Instant::now() + self.shared.cfg.shutdown_timeout()));
        let threads: Vec<_> = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        let s = &self.shared.stats;
        log::info!(
            "RabbitMQ backbone stopped: {} messages taken from inq, {} confirmed by the broker ({} republished), \
             {} consumed, {} rejected as undecodable, {} connections",
            s.taken.get(),
            s.confirmed.get(),
            s.republished.get(),
            s.consumed.get(),
            s.rejected.get(),
            s.connects.get(),
        );
        Ok(())
    }
}

export_plugin!(backbone, "rabbitmq", start);
