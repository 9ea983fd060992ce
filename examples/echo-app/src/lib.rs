//! `echo`: a complete example of an app plugin for Threat Bus.
//!
//! It shows every step a plugin takes:
//! 1. read its config section with [`PluginContext::config`] (unknown keys
//!    are errors);
//! 2. make a [`Queue`] and subscribe it to topics with [`Host::subscribe`],
//!    optionally with a snapshot;
//! 3. start its thread with [`spawn_thread`] (a panic there marks the
//!    plugin failed instead of killing the bus);
//! 4. turn input into a message with [`Host::parse`] (the host validates
//!    it) and publish it into the inbound queue;
//! 5. count what it does with [`Host::counter`] (ABI 1.1): the host shows
//!    it on `/metrics` as `threatbus_echo_received_total{plugin="echo"}`;
//! 6. stop: unsubscribe, close the queue, join the thread.
//!
//! ```yaml
//! plugins:
//!   apps:
//!     echo:
//!       topics: [stix2/indicator]
//!       snapshot_days: 0
//!       announce: '{"type": "indicator", ...}'
//! ```

#![forbid(unsafe_code)]

mod config;
mod listener;

use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

use threatbus_plugin_api::{
    config::invalid_config, export_plugin, spawn_thread, App, Counter, Host, MessageKind, Overflow, PluginContext,
    PluginError, Queue,
};

/// The running plugin.
struct Echo {
    host: Host,
    topics: Vec<String>,
    queue: Queue,
    received: Counter,
    listener: Mutex<Option<JoinHandle<()>>>,
}

fn start(ctx: PluginContext) -> Result<Echo, PluginError> {
    let cfg: config::Config = ctx.config()?;
    if cfg.topics.is_empty() {
        return Err(invalid_config(ctx.name(), "topics: name at least one topic"));
    }
    let host = ctx.host();
    // Messages wait here for the listener; a slow listener loses the newest
    // ones (counted by the queue) instead of stalling the bus.
    let queue = Queue::bounded(10_000, Overflow::DROP_NEWEST);
    // Registered once at start; updating it is one atomic add.
    let received = host.counter("echo_received", "Messages the echo plugin received", &[]);
    let listener = {
        let queue = queue.clone();
        spawn_thread(host, "echo-listener", move || listener::run(queue, received))
            .map_err(|e| PluginError::new(format!("cannot start the listener: {e}")))?
    };
    let snapshot = Duration::from_secs(cfg.snapshot_days * 24 * 3600);
    for topic in &cfg.topics {
        host.subscribe(topic, &queue, snapshot).map_err(PluginError::new)?;
    }
    if let Some(json) = &cfg.announce {
        let msg = host
            .parse(MessageKind::INDICATOR, json)
            .map_err(|e| invalid_config(ctx.name(), format!("announce: {e}")))?;
        host.inq().send(msg).map_err(|e| PluginError::new(format!("cannot publish: {e}")))?;
    }
    log::info!("echo started: listening to {:?}", cfg.topics);
    Ok(Echo { host, topics: cfg.topics, queue, received, listener: Mutex::new(Some(listener)) })
}

impl App for Echo {
    fn stop(&self) -> Result<(), PluginError> {
        for topic in &self.topics {
            if let Err(e) = self.host.unsubscribe(topic, &self.queue) {
                log::warn!("echo: unsubscribing from {topic}: {e}");
            }
        }
        self.queue.close();
        if let Some(h) = self.listener.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        log::info!("echo stopped after {} messages ({} dropped)", self.received.get(), self.queue.dropped());
        Ok(())
    }
}

export_plugin!(app, "echo", start);
