//! The tenzir app plugin: live and retro matching of the bus's indicators
//! in Tenzir (the successor of VAST), as `vast-threatbus` did for VAST,
//! with Tenzir's own means: a lookup-table context holds the indicators,
//! a long-running `context_lookup` pipeline reports the node's new events
//! that contain one (LIVE), and a search per new indicator reports the
//! historical ones (RETRO). Every hit is a STIX sighting into the bus (or,
//! with `sink`, printed or handed to a command).
//!
//! Threads: `tenzir-updates` (see `updater`), `tenzir-live` (`live`, with
//! `live_match`), `tenzir-retro` (`retro`, with `retro_match`) and
//! `tenzir-reaper` (`cli`: kills processes past their deadline and, at
//! stop, all). Every pipeline is one `tenzir` client process.
//!
//! Supported indicators: point indicators on `ipv4-addr:value`,
//! `ipv6-addr:value` (addresses and subnets), `domain-name:value`,
//! `url:value` and `file:hashes.*`; removals (`x_threatbus_update:
//! REMOVE`) erase the value from the table. Config keys and how they
//! differ from vast-threatbus are in the `config` module.

#![forbid(unsafe_code)]

mod cli;
mod config;
mod live;
mod report;
mod retro;
pub mod tql;
mod updater;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use threatbus_http::{Stopper, Worker};
use threatbus_plugin_api::queue::Overflow;
use threatbus_plugin_api::{config::invalid_config, export_plugin, App, Host, PluginContext, PluginError, Queue};

pub use config::Config;

/// The topic indicators come from.
const TOPIC: &str = "stix2/indicator";

/// How long a stop waits for each thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// Counts of what the plugin did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Indicators added to the lookup table.
    pub added: AtomicU64,
    /// Indicators removed from it.
    pub removed: AtomicU64,
    /// Indicators that cannot be matched (not point indicators, other paths).
    pub skipped: AtomicU64,
    /// Historical searches run.
    pub retro_searches: AtomicU64,
    /// Indicators not searched because too many searches waited.
    pub retro_dropped: AtomicU64,
    /// Sightings reported (or handed to the sink).
    pub sightings: AtomicU64,
    /// Matches not reported (transform failed, invalid sighting).
    pub dropped_sightings: AtomicU64,
}

/// What the plugin's threads share.
pub struct Shared {
    host: Host,
    cfg: Config,
    stop: Stopper,
    counters: Counters,
}

struct TenzirApp {
    shared: Arc<Shared>,
    procs: Arc<cli::Processes>,
    queue: Queue,
    workers: Mutex<Vec<(&'static str, Worker)>>,
}

/// Finds `binary` as a command would: a path, or a name on `PATH`.
fn find_binary(binary: &str) -> Result<(), String> {
    let found = if binary.contains('/') {
        std::path::Path::new(binary).is_file()
    } else {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(binary).is_file()))
    };
    if found {
        Ok(())
    } else {
        Err(format!("tenzir_binary: '{binary}' not found (install Tenzir, or give the client's path)"))
    }
}

fn start(ctx: PluginContext) -> Result<TenzirApp, PluginError> {
    let cfg: Config = ctx.config()?;
    let name = ctx.name();
    cfg.validate().and_then(|()| find_binary(&cfg.tenzir_binary)).map_err(|e| invalid_config(name, e))?;
    let host = ctx.host();
    let procs = Arc::new(cli::Processes::default());
    let tenzir = Arc::new(cli::Tenzir::new(&cfg.tenzir_binary, &cfg.endpoint, procs.clone()));
    let queue = Queue::bounded(cfg.queue_size, Overflow::DROP_NEWEST);
    let shared = Arc::new(Shared { host, cfg, stop: Stopper::default(), counters: Counters::default() });
    let app = TenzirApp {
        shared: shared.clone(),
        procs: procs.clone(),
        queue: queue.clone(),
        workers: Mutex::new(Vec::new()),
    };
    let spawn = |thread: &'static str, f: Box<dyn FnOnce() + Send>| -> Result<(), PluginError> {
        let w = Worker::spawn(host, thread, f)
            .map_err(|e| PluginError::new(format!("tenzir: cannot start {thread}: {e}")))?;
        app.workers.lock().unwrap_or_else(|e| e.into_inner()).push((thread, w));
        Ok(())
    };
    let result = (|| {
        let (sh, pr) = (shared.clone(), procs.clone());
        spawn("tenzir-reaper", Box::new(move || pr.run_reaper(&sh.stop)))?;
        let retro = if shared.cfg.retro_match {
            let (tx, rx) = sync_channel(retro::BACKLOG);
            let (sh, tz) = (shared.clone(), tenzir.clone());
            spawn("tenzir-retro", Box::new(move || retro::run(sh, tz, rx)))?;
            Some(tx)
        } else {
            None
        };
        if shared.cfg.live_match {
            let (sh, tz) = (shared.clone(), tenzir.clone());
            spawn("tenzir-live", Box::new(move || live::run(sh, tz)))?;
        }
        let (sh, tz, q) = (shared.clone(), tenzir.clone(), queue.clone());
        spawn("tenzir-updates", Box::new(move || updater::run(sh, tz, q, retro)))?;
        host.subscribe(TOPIC, &queue, shared.cfg.snapshot())
            .map_err(|e| PluginError::new(format!("tenzir: cannot subscribe to {TOPIC}: {e}")))?;
        Ok(())
    })();
    if let Err(e) = result {
        let _ = app.stop();
        return Err(e);
    }
    log::info!(
        "Tenzir app plugin started: node {}, lookup table '{}', live matching {}, retro matching {}",
        shared.cfg.endpoint,
        shared.cfg.lookup_table,
        if shared.cfg.live_match { "on" } else { "off" },
        if shared.cfg.retro_match { "on" } else { "off" }
    );
    Ok(app)
}

impl App for TenzirApp {
    fn stop(&self) -> Result<(), PluginError> {
        self.shared.stop.stop();
        let _ = self.shared.host.unsubscribe(TOPIC, &self.queue);
        self.queue.close();
        self.procs.reap(true);
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for (name, w) in workers {
            if !w.join_within(STOP_WAIT) {
                log::warn!("tenzir: thread {name} did not end within {STOP_WAIT:?}; not waiting for it");
            }
        }
        let c = &self.shared.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        log::info!(
            "Tenzir app plugin stopped: {} indicators added, {} removed, {} not matchable, {} dropped; {} historical searches ({} not run); {} sightings, {} not reported",
            n(&c.added),
            n(&c.removed),
            n(&c.skipped),
            self.queue.dropped(),
            n(&c.retro_searches),
            n(&c.retro_dropped),
            n(&c.sightings),
            n(&c.dropped_sightings)
        );
        Ok(())
    }
}

export_plugin!(app, "tenzir", start);
