//! The in-memory backbone: every message goes to each queue subscribed to a
//! prefix of its topic. Messages are shared (reference-counted), never
//! copied per subscriber. Apps' messages are routed on the sending app's
//! thread through a direct queue the backbone offers the host (ABI 1.2);
//! one thread reads `inq` for the rest (the host's own messages, and all
//! messages in a host that declines the offer).
//!
//! Difference from the Python original: a queue subscribed under two
//! matching prefixes (e.g. `stix2` and `stix2/indicator`) receives a message
//! once, not twice.

#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

mod config;
mod provisioner;

use threatbus_plugin_api::{export_plugin, spawn_thread, Backbone, PluginContext, PluginError, Queue};
use threatbus_routing::{DirectRoute, Subscriptions};

struct Inmem {
    inq: Queue,
    subs: Arc<Subscriptions>,
    stopping: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

fn start(ctx: PluginContext) -> Result<Inmem, PluginError> {
    let _: config::Config = ctx.config()?;
    let inq = ctx.inq();
    let subs = Arc::new(Subscriptions::new());
    let stopping = Arc::new(AtomicBool::new(false));
    let worker = {
        let (inq, subs, stopping) = (inq.clone(), subs.clone(), stopping.clone());
        spawn_thread(ctx.host(), "inmem-provisioner", move || provisioner::run(inq, subs, stopping))
            .map_err(|e| PluginError::new(format!("cannot start thread: {e}")))?
    };
    if !ctx.host().offer_direct_inq(DirectRoute::new(subs.clone())) {
        log::info!("the host routes every message through inq (no direct inbound queue)");
    }
    log::info!("In-memory backbone started.");
    Ok(Inmem { inq, subs, stopping, worker: Mutex::new(Some(worker)) })
}

impl Backbone for Inmem {
    fn subscribe(&self, topic: &str, queue: Queue) -> Result<(), PluginError> {
        log::info!("Adding subscription to: {topic}");
        self.subs.subscribe(topic, queue);
        Ok(())
    }

    fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), PluginError> {
        log::info!("Removing subscription from: {topic}");
        self.subs.unsubscribe(topic, queue);
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        // The host closed inq after stopping the apps; the worker forwards
        // what is left and then ends. Closing again is harmless.
        self.stopping.store(true, Ordering::Relaxed);
        self.inq.close();
        if let Some(h) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        Ok(())
    }
}

export_plugin!(backbone, "inmem", start);
