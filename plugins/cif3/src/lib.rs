//! The cif3 app plugin: indicators from the bus into a CIF v3
//! (bearded-avenger) instance, as the original `threatbus-cif3` did. It
//! subscribes to `stix2/indicator` and submits each usable point indicator
//! with `POST /indicators`; it never publishes into the bus.
//!
//! Threads: `cif3-sender` (see the `sender` module). The mapping, including
//! what is not submitted, is described in the `mapping` and `csirtg`
//! modules.
//!
//! Differences from the original, on purpose:
//! * CIF being unreachable at start is logged and retried with backoff
//!   while the plugin runs (the original gave up and never submitted);
//! * retries on 429 and 5xx are bounded (`api.retries`, jittered backoff up
//!   to `api.retry_max_delay`); the original retried forever after a 30 to
//!   60 s pause;
//! * the queue between the bus and CIF is bounded (`queue_size`); drops are
//!   counted and logged;
//! * the token may come from `api.token_file` or the environment
//!   (`THREATBUS_PLUGINS__APPS__CIF3__API__TOKEN`), and `api.ssl` defaults to
//!   `true` and may name a CA file.

#![forbid(unsafe_code)]

mod client;
mod config;
pub mod csirtg;
pub mod mapping;
mod sender;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threatbus_http::{Stopper, Worker};
use threatbus_plugin_api::queue::Overflow;
use threatbus_plugin_api::{config::invalid_config, export_plugin, App, Host, PluginContext, PluginError, Queue};

pub use config::Config;
use mapping::Fields;

/// The topic indicators come from.
const TOPIC: &str = "stix2/indicator";

/// How long a stop waits for the sender, which may be in a request.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Counts of what the sender did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Indicators CIF accepted.
    pub submitted: AtomicU64,
    /// Indicators not submitted (updates, removals, unsupported, untyped).
    pub skipped: AtomicU64,
    /// Indicators given up on after retries or an error answer.
    pub failed: AtomicU64,
}

/// What the sender shares with the plugin.
pub struct Shared {
    fields: Fields,
    queue_size: usize,
    stop: Stopper,
    counters: Counters,
}

struct Cif3 {
    host: Host,
    shared: Arc<Shared>,
    queue: Queue,
    sender: Mutex<Option<Worker>>,
}

fn start(ctx: PluginContext) -> Result<Cif3, PluginError> {
    let cfg: Config = ctx.config()?;
    cfg.validate().map_err(|e| invalid_config(ctx.name(), e))?;
    let cif = Arc::new(client::Cif::new(&cfg.api).map_err(|e| invalid_config(ctx.name(), e))?);
    let host = ctx.host();
    let shared = Arc::new(Shared {
        fields: Fields {
            tags: cfg.tags.clone(),
            tlp: cfg.tlp.clone(),
            group: cfg.group.clone(),
            confidence: cfg.confidence,
        },
        queue_size: cfg.queue_size,
        stop: Stopper::default(),
        counters: Counters::default(),
    });
    let queue = Queue::bounded(cfg.queue_size, Overflow::DROP_NEWEST);
    host.subscribe(TOPIC, &queue, Duration::ZERO)
        .map_err(|e| PluginError::new(format!("cif3: cannot subscribe to {TOPIC}: {e}")))?;
    let (sh, q) = (shared.clone(), queue.clone());
    let sender = match Worker::spawn(host, "cif3-sender", move || sender::run(sh, cif, q)) {
        Ok(h) => h,
        Err(e) => {
            let _ = host.unsubscribe(TOPIC, &queue);
            return Err(PluginError::new(format!("cif3: cannot start the sender thread: {e}")));
        }
    };
    log::info!("CIF3 plugin started: submitting to {}", cfg.api.host.trim());
    Ok(Cif3 { host, shared, queue, sender: Mutex::new(Some(sender)) })
}

impl App for Cif3 {
    fn stop(&self) -> Result<(), PluginError> {
        self.shared.stop.stop();
        let _ = self.host.unsubscribe(TOPIC, &self.queue);
        self.queue.close();
        if let Some(w) = self.sender.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if !w.join_within(STOP_WAIT) {
                log::warn!("cif3: the sender is still waiting for CIF (up to api.timeout); not waiting for it");
            }
        }
        let c = &self.shared.counters;
        log::info!(
            "CIF3 plugin stopped: {} indicators submitted, {} not submittable, {} failed, {} dropped",
            c.submitted.load(Ordering::Relaxed),
            c.skipped.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
            self.queue.dropped()
        );
        Ok(())
    }
}

export_plugin!(app, "cif3", start);
