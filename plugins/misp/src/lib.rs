//! The misp app plugin: MISP attributes become STIX-2.1 indicators on the
//! bus, sightings on the bus are reported to MISP, and snapshot requests
//! are answered from MISP, as the original `threatbus-misp` did.
//!
//! Threads, each optional:
//! * `misp-zmq`: a SUB socket on MISP's ZeroMQ publisher (`zmq` section);
//! * `misp-kafka`: a Kafka consumer (`kafka` section); both intakes may
//!   run at once (the original allowed only one);
//! * `misp-sightings`: reports `stix2/sighting` messages to MISP's REST API
//!   (`api` section);
//! * `misp-snapshots`: answers snapshot requests with MISP searches (`api`).
//!
//! The mapping and the filter, and where they differ from the original on
//! purpose, are described in the `mapping` module. Other differences:
//! * without an `api` section the plugin says once that sightings and
//!   snapshots are off, and subscribes to nothing (the original subscribed
//!   a queue that nobody emptied);
//! * MISP being unreachable at start is a warning, not a failed start:
//!   intake runs regardless, and REST requests are retried where safe;
//! * the API key may come from `api.key_file` or the environment
//!   (`THREATBUS_PLUGINS__APPS__MISP__API__KEY`), and `api.ssl` may name a
//!   CA file as well as be `true` or `false`.

#![forbid(unsafe_code)]

mod config;
mod intake;
mod kafka_intake;
pub mod mapping;
mod rest;
mod sightings;
mod snapshots;
mod zmq_intake;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threatbus_plugin_api::queue::Overflow;
use threatbus_plugin_api::{
    config::invalid_config, export_plugin, App, Host, Message, PluginContext, PluginError, Queue,
};

pub use config::{Config, Filter, OrgId};
use intake::{Intake, IntakeCounters};
use threatbus_http::{Stopper, Worker};

/// The topic sightings are reported from.
const SIGHTING_TOPIC: &str = "stix2/sighting";

/// How long a stop waits for each thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Counts of what the REST side did.
#[derive(Debug, Default)]
pub struct RestCounters {
    /// Sightings MISP accepted.
    pub sightings_reported: AtomicU64,
    /// Sightings MISP did not accept (after retries).
    pub sightings_failed: AtomicU64,
    /// Snapshot envelopes sent.
    pub snapshot_envelopes: AtomicU64,
}

/// What the plugin's threads share.
pub struct Shared {
    host: Host,
    cfg: Config,
    stop: Arc<Stopper>,
    counters: RestCounters,
}

struct MispApp {
    shared: Arc<Shared>,
    intake: Arc<IntakeCounters>,
    sightings: Option<Queue>,
    snapshots: Mutex<Option<SyncSender<Message>>>,
    threads: Mutex<Vec<(&'static str, Worker)>>,
}

fn start(ctx: PluginContext) -> Result<MispApp, PluginError> {
    let cfg: Config = ctx.config()?;
    let name = ctx.name();
    cfg.validate().map_err(|e| invalid_config(name, e))?;
    let host = ctx.host();

    // Everything that can fail comes before the first thread.
    let zmq_ctx = zmq::Context::new();
    let zmq_socket = match &cfg.zmq {
        Some(z) => Some(zmq_intake::connect(&zmq_ctx, z, cfg.max_message_size).map_err(|e| invalid_config(name, e))?),
        None => None,
    };
    let kafka = match &cfg.kafka {
        Some(k) => Some(kafka_intake::connect(k).map_err(|e| invalid_config(name, e))?),
        None => None,
    };
    let misp = match &cfg.api {
        Some(api) => Some(Arc::new(rest::Misp::new(api).map_err(|e| invalid_config(name, e))?)),
        None => {
            log::info!(
                "misp: no api section, so sightings are not reported to MISP and snapshot requests are not served"
            );
            None
        }
    };
    let sightings = match &misp {
        Some(_) => {
            let q = Queue::bounded(cfg.sighting_queue_size, Overflow::DROP_NEWEST);
            host.subscribe(SIGHTING_TOPIC, &q, Duration::ZERO)
                .map_err(|e| PluginError::new(format!("misp: cannot subscribe to {SIGHTING_TOPIC}: {e}")))?;
            Some(q)
        }
        None => None,
    };

    let poll_interval = cfg.kafka.as_ref().map(|k| Duration::from_secs_f64(k.poll_interval));
    let page_size = cfg.snapshot_page_size;
    let snapshot_queue_size = cfg.snapshot_queue_size;
    let stop = Arc::new(Stopper::default());
    let shared = Arc::new(Shared { host, cfg, stop: stop.clone(), counters: RestCounters::default() });
    let filters = Arc::new(shared.cfg.filter.clone());
    let counters = Arc::new(IntakeCounters::default());
    let app = MispApp {
        shared: shared.clone(),
        intake: counters.clone(),
        sightings: sightings.clone(),
        snapshots: Mutex::new(None),
        threads: Mutex::new(Vec::new()),
    };
    let spawn = |thread: &'static str, f: Box<dyn FnOnce() + Send>| -> Result<(), PluginError> {
        let h = Worker::spawn(host, thread, f).map_err(|e| {
            stop.stop();
            PluginError::new(format!("misp: cannot start thread {thread}: {e}"))
        })?;
        app.threads.lock().unwrap_or_else(|e| e.into_inner()).push((thread, h));
        Ok(())
    };
    let intake = |source| Intake::new(host, filters.clone(), stop.clone(), counters.clone(), source);
    let result = (|| {
        if let Some(socket) = zmq_socket {
            let (handler, st) = (intake("ZeroMQ"), stop.clone());
            spawn(
                "misp-zmq",
                Box::new(move || {
                    zmq_intake::run(socket, handler, &st);
                    drop(zmq_ctx);
                }),
            )?;
        }
        if let (Some(consumer), Some(poll)) = (kafka, poll_interval) {
            let (handler, st) = (intake("Kafka"), stop.clone());
            spawn("misp-kafka", Box::new(move || kafka_intake::run(consumer, poll, handler, &st)))?;
        }
        if let (Some(misp), Some(q)) = (misp, sightings) {
            let (sh, m) = (shared.clone(), misp.clone());
            spawn("misp-sightings", Box::new(move || sightings::run(sh, m, q)))?;
            let (tx, rx) = sync_channel(snapshot_queue_size);
            *app.snapshots.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
            let sh = shared.clone();
            spawn("misp-snapshots", Box::new(move || snapshots::run(sh, misp, rx, page_size)))?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = app.stop();
        return Err(e);
    }
    log::info!("MISP app plugin started");
    Ok(app)
}

impl App for MispApp {
    fn snapshot(&self, request: &Message) -> Result<(), PluginError> {
        let guard = self.snapshots.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tx) = guard.as_ref() else {
            log::debug!("misp: snapshot request ignored (no api section)");
            return Ok(());
        };
        match tx.try_send(request.clone()) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                log::warn!("misp: too many snapshot requests waiting for MISP; refusing one");
                Err(PluginError::new("misp: too many snapshot requests waiting"))
            }
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    fn stop(&self) -> Result<(), PluginError> {
        self.shared.stop.stop();
        if let Some(q) = &self.sightings {
            let _ = self.shared.host.unsubscribe(SIGHTING_TOPIC, q);
            q.close();
        }
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, w) in threads {
            // A REST thread may be in a request to a MISP that does not
            // answer; it ends at api.timeout, the stop does not wait for it.
            if !w.join_within(STOP_WAIT) {
                log::warn!(
                    "misp: thread {name} is still busy (a request to MISP, up to api.timeout); not waiting for it"
                );
            }
        }
        let c = &self.intake;
        let r = &self.shared.counters;
        log::info!(
            "MISP app plugin stopped: {} indicators to the bus, {} attributes skipped, {} invalid; {} sightings reported, {} failed; {} snapshot indicators",
            c.accepted.load(Ordering::Relaxed),
            c.skipped.load(Ordering::Relaxed),
            c.invalid.load(Ordering::Relaxed),
            r.sightings_reported.load(Ordering::Relaxed),
            r.sightings_failed.load(Ordering::Relaxed),
            r.snapshot_envelopes.load(Ordering::Relaxed),
        );
        Ok(())
    }
}

export_plugin!(app, "misp", start);
