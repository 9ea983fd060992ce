//! # threatbus-plugin-api
//!
//! The SDK and the stable binary interface (ABI) for plugins of the
//! `threatbus` host. A plugin is a `cdylib` that depends on this crate,
//! `log` and `serde`; the host loads it from its plugin directory.
//!
//! ## Depending on it
//! The crate is not on crates.io yet. Depend on it by git or by path, with
//! the workspace's `abi_stable` pin coming along:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! threatbus-plugin-api = { git = "<the threatbus repository>", tag = "<a release>" }
//! # or: threatbus-plugin-api = { path = "../threatbus/plugin-api" }
//! log = "0.4"
//! serde = { version = "1", features = ["derive"] }
//!
//! [profile.release]
//! panic = "unwind"   # the default; the host refuses panic = "abort" plugins
//! ```
//!
//! Plugins that convert formats (STIX to a tool's format and back) also
//! depend on `threatbus-stix`, the data model; relaying plugins need not.
//!
//! ## Writing a plugin, step by step
//! The complete example is `examples/echo-app` in the repository (built by
//! CI); in short:
//! 1. Implement [`App`] (talks to external tools: publishes into the inbound
//!    queue and subscribes queues) or [`Backbone`] (routes messages from the
//!    inbound queue to subscribed queues by topic prefix).
//! 2. Write `fn start(ctx: PluginContext) -> Result<T, PluginError>`: read
//!    your config with [`PluginContext::config`] (unknown keys are errors),
//!    start your threads with [`spawn_thread`], return.
//! 3. `export_plugin!(app, "name", start);` (see [`export_plugin!`]).
//! 4. Turn input into messages with [`Host::parse`], which validates it in
//!    the host's data model; put them into [`Host::inq`]. Receive with
//!    [`Host::subscribe`] on a [`Queue`] of your own.
//! 5. Log with `log::info!` etc.; records reach the host's logger with target
//!    `threatbus::plugin::<name>`. Never install a logger yourself.
//! 6. Install `lib<crate>.so` into the plugin directory
//!    (`/usr/lib/threatbus/plugins`), owned by root, mode 0644, and add a
//!    `plugins.apps.<name>` (or `plugins.backbones.<name>`) config section.
//!
//! Every call from the host into the plugin is wrapped in `catch_unwind`; a
//! panic becomes an error and the host marks the plugin as failed. Threads
//! spawned with [`spawn_thread`] report their panics the same way.
//!
//! ## Messages and queues
//! A [`Message`] is an immutable, reference-counted (kind, canonical JSON)
//! pair; cloning shares it. A [`Queue`] is bounded and closable; closing
//! wakes every waiter. Topics are matched by string prefix: subscribing to
//! `stix2/` receives indicators and sightings. A backbone that routes
//! in-process can offer the host a direct queue ([`Host::offer_direct_inq`],
//! ABI 1.2) whose sends route on the sender's thread ([`DirectSink`]).
//!
//! ## Metrics
//! Since ABI 1.1 a plugin can report its own counters and gauges
//! ([`Host::counter`], [`Host::gauge`], module [`metrics`]); the host
//! exposes them on its Prometheus endpoint beside its own counts of what
//! every plugin received, put on the bus and was delivered.
//!
//! ## Versions
//! The ABI has its own version, [`abi::ABI_MAJOR`].[`abi::ABI_MINOR`],
//! separate from this crate's semver (see [`abi`] for the rules):
//! * a host accepts a plugin whose ABI major equals its own and whose minor
//!   is equal or lower; a plugin of a higher minor is refused with a line
//!   saying to upgrade the host;
//! * a minor only appends entries to the tables; entries a table lacks
//!   read as absent;
//! * the Debian package of a plugin built against minor M depends on
//!   `threatbus-plugin-abi-1 (>= 1.M)`, which the host package provides as
//!   `threatbus-plugin-abi-1 (= 1.N)`.
//!
//! The host reads the plugin's [`abi::PluginManifest`] from the file before
//! it loads anything; it loads only the plugins its config names, checks
//! the `abi_stable` layout of everything that crosses the boundary, and
//! only then calls the entry function.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

pub use abi_stable;

pub mod abi;
pub mod config;
pub mod logging;
pub mod message;
pub mod metrics;
pub mod plugin;
pub mod queue;
pub mod random;

pub use abi::{PluginError, PluginKind};
pub use message::{Message, MessageKind};
pub use metrics::{Counter, Gauge};
pub use plugin::{spawn_thread, App, Backbone, Host, PluginContext};
pub use queue::{DirectSink, Doorbell, Overflow, Queue, QueueBuilder, Received, SendCounts, SendError};
