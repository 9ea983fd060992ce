//! # threatbus-plugin-api
//!
//! The stable plugin ABI of the `threatbus` host, plus the Threat Bus data
//! model. Third-party plugins depend on this crate alone: it re-exports the
//! pinned [`abi_stable`] it is built on.
//!
//! ## Writing a plugin
//! 1. Create a crate with `crate-type = ["cdylib"]` that depends on
//!    `threatbus-plugin-api = "1"` and `log`. Build it with
//!    `panic = "unwind"` (the default); the host refuses `panic = "abort"`
//!    plugins because a panic there would kill the bus.
//! 2. Implement [`App`] (talks to external tools: publishes into the inbound
//!    queue and subscribes queues) or [`Backbone`] (routes messages from the
//!    inbound queue to subscribed queues by topic prefix).
//! 3. Write `fn start(ctx: PluginContext) -> Result<T, PluginError>`: read
//!    your config with [`PluginContext::config`], start your threads with
//!    [`spawn_thread`], return. Then `export_plugin!(app, "name", start);`.
//! 4. Log with `log::info!` etc.; records reach the host's logger with target
//!    `threatbus::plugin::<name>`. Never install a logger yourself.
//! 5. Install `lib<crate>.so` into the plugin directory
//!    (`/usr/lib/threatbus/plugins`), owned by root, mode 0644, and add a
//!    `plugins.apps.<name>` (or `plugins.backbones.<name>`) config section.
//!
//! Every call from the host into the plugin is wrapped in `catch_unwind`; a
//! panic becomes an error and the host marks the plugin as failed. Threads
//! spawned with [`spawn_thread`] report their panics the same way.
//!
//! ## Messages and queues
//! A [`Message`] is an immutable, reference-counted (kind, canonical JSON)
//! pair; cloning shares it. A [`Queue`] is bounded and closable; closing wakes
//! every waiter. Topics are matched by string prefix: subscribing to
//! `stix2/` receives indicators and sightings.
//!
//! ## Versioning
//! This crate follows semver, and its version *is* the ABI version:
//! * the host accepts a plugin whose ABI major equals its own and whose minor
//!   is equal or lower ([`abi::ABI_MAJOR`], [`abi::ABI_MINOR`]);
//! * a minor release only appends fields at the end of the prefix types
//!   ([`abi::HostServices`], [`abi::PluginVTable`], [`queue::QueueVTable`]), or
//!   adds new Rust-only API; fields are never removed, renamed or reordered;
//! * anything else is a new major, with a new Debian virtual package
//!   `threatbus-plugin-abi-<major>`.
//!
//! The host reads the frozen [`abi::PluginDeclaration`] (magic, sizes,
//! versions, kind, name) before it runs any plugin code, then checks the
//! `abi_stable` layout of every shared type, and only then calls the entry.

#![warn(missing_docs)]

pub use abi_stable;

pub mod abi;
pub mod config;
pub mod data;
pub mod logging;
pub mod message;
pub mod plugin;
pub mod queue;
pub mod routing;

pub use abi::{PluginError, PluginKind};
pub use message::{Message, MessageKind};
pub use plugin::{spawn_thread, App, Backbone, Host, PluginContext};
pub use queue::{Overflow, Queue, Received, SendError};
