//! The zeek app plugin: Zeek 5+ (Broker protocol version 1) peers with the
//! bus as it did with the original `threatbus-zeek`, running the original
//! `threatbus.zeek` script with Broker's defaults.
//!
//! The bus listens (`host`, `port` 47761); each Zeek connects, subscribes
//! with `<ns>::subscribe(topic, interval)` on `threatbus/manage`, gets
//! `<ns>::subscription_acknowledged(p2p)`, then receives `<ns>::intel`
//! events on its p2p topic and sends `<ns>::sighting` events on
//! `stix2/sighting`, which become STIX sightings on the bus.
//!
//! Zeek < 5 (Broker's older CAF-based protocol) is not supported: it has
//! no version handshake, and its transport cannot be spoken without CAF.
//!
//! Differences from the original, on purpose:
//! * the listen address defaults to 127.0.0.1 (the original: localhost);
//! * a negative snapshot interval (the original's README example is
//!   `-30 days`) requests the same span as a positive one, instead of a
//!   span in the future;
//! * bad input (garbage, truncated or huge frames, unknown tags, events of
//!   the wrong arity or types) closes that peer's connection with a log
//!   line; the original ignored wrong event arities.

#![forbid(unsafe_code)]

pub mod client;
mod config;
mod events;
mod forwarder;
mod peer;
mod server;
#[cfg(test)]
mod testutil;
mod tls;
pub mod value;
pub mod wire;

use std::sync::Mutex;
use std::thread::JoinHandle;

use threatbus_plugin_api::{
    config::invalid_config, export_plugin, spawn_thread, App, Host, PluginContext, PluginError,
};

pub use config::{Config, TlsMode};
pub use events::{intel_event, Event};
pub use peer::{handshake, MANAGE_TOPIC, P2P_SUFFIX_LEN, SIGHTING_TOPIC};

/// What the server thread, the peerings and the forwarders share.
pub struct Shared {
    host: Host,
    cfg: Config,
    /// Our Broker endpoint id (random per start).
    endpoint_id: wire::EndpointId,
}

struct Zeek {
    shutdown: tokio::sync::watch::Sender<bool>,
    server: Mutex<Option<JoinHandle<()>>>,
}

fn start(ctx: PluginContext) -> Result<Zeek, PluginError> {
    let cfg: Config = ctx.config()?;
    cfg.validate().map_err(|e| invalid_config(ctx.name(), e))?;
    let acceptor = tls::acceptor(&cfg).map_err(|e| invalid_config(ctx.name(), e))?;
    let listener = std::net::TcpListener::bind((cfg.host.as_str(), cfg.port))
        .map_err(|e| PluginError::new(format!("zeek: cannot listen on {}:{}: {e}", cfg.host, cfg.port)))?;
    let bound = listener.local_addr().map(|a| a.port()).unwrap_or(cfg.port);
    let endpoint_id = uuid::Uuid::new_v4().into_bytes();
    let mode = format!("{:?}", cfg.tls).to_lowercase();
    let shared = std::sync::Arc::new(Shared { host: ctx.host(), cfg, endpoint_id });
    let (shutdown, rx) = tokio::sync::watch::channel(false);
    let sh = shared.clone();
    let server = spawn_thread(ctx.host(), "zeek-server", move || server::run(listener, acceptor, sh, rx))
        .map_err(|e| PluginError::new(format!("zeek: cannot start the server thread: {e}")))?;
    log::info!("Zeek app plugin started: listening on {}:{bound} (TLS: {mode})", shared.cfg.host);
    Ok(Zeek { shutdown, server: Mutex::new(Some(server)) })
}

impl App for Zeek {
    fn stop(&self) -> Result<(), PluginError> {
        let _ = self.shutdown.send(true);
        if let Some(h) = self.server.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        log::info!("Zeek app plugin stopped");
        Ok(())
    }
}

export_plugin!(app, "zeek", start);
