//! What plugin authors implement ([`App`], [`Backbone`]) and what they get
//! from the host ([`PluginContext`], [`Host`]).

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use abi_stable::std_types::{RResult, RStr};
use serde::de::DeserializeOwned;

use crate::abi::{HostServices_Ref, PluginError, PluginInstance, PluginVTable};
use crate::{Message, Queue};

/// A backbone routes every message from `inq` to the queues subscribed to a
/// prefix of its topic.
pub trait Backbone: Send + Sync + 'static {
    /// Adds `queue` as a subscriber of all topics starting with `topic`.
    fn subscribe(&self, topic: &str, queue: Queue) -> Result<(), PluginError>;
    /// Removes the subscription of `queue` to `topic`; unknown ones are a no-op.
    fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), PluginError>;
    /// Stops all threads after forwarding what is already in `inq` where
    /// possible. Must return within a few seconds.
    fn stop(&self) -> Result<(), PluginError>;
}

/// An app connects external tools to the bus: it publishes into `inq` and
/// subscribes queues through [`Host::subscribe`].
pub trait App: Send + Sync + 'static {
    /// Serves a snapshot request (a [`crate::data::SnapshotRequest`] message)
    /// by putting [`crate::data::SnapshotEnvelope`] messages into `inq`.
    /// Called on a host worker thread; may block briefly.
    fn snapshot(&self, request: &Message) -> Result<(), PluginError> {
        let _ = request;
        Ok(())
    }
    /// Stops all threads (no new input). Must return within a few seconds.
    fn stop(&self) -> Result<(), PluginError>;
}

/// The host's services, as seen by a plugin. Cheap to copy and valid for
/// the whole process lifetime.
#[derive(Clone, Copy)]
pub struct Host {
    services: HostServices_Ref,
}

// SAFETY: the host's service functions are thread-safe.
unsafe impl Send for Host {}
unsafe impl Sync for Host {}

impl Host {
    /// Wraps the raw service table. Used by the export macro and tests.
    pub fn from_services(services: HostServices_Ref) -> Self {
        Self { services }
    }

    /// A new handle to the shared inbound queue.
    pub fn inq(&self) -> Queue {
        (self.services.inq())(self.services.ctx())
    }

    /// Subscribes `queue` to `topic` on every backbone. With a non-zero
    /// `snapshot` it also requests a snapshot of that age and returns its id.
    pub fn subscribe(&self, topic: &str, queue: &Queue, snapshot: Duration) -> Result<Option<String>, String> {
        match (self.services.subscribe())(self.services.ctx(), RStr::from_str(topic), queue, snapshot.as_secs()) {
            RResult::ROk(id) => Ok(id.into_option().map(Into::into)),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Removes a subscription made with [`Host::subscribe`].
    pub fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), String> {
        match (self.services.unsubscribe())(self.services.ctx(), RStr::from_str(topic), queue) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Tells the host that this plugin failed (e.g. one of its threads died).
    pub fn report_failure(&self, message: &str) {
        (self.services.report_failure())(self.services.ctx(), RStr::from_str(message))
    }

    /// The host's plugin ABI version `(major, minor)`.
    pub fn abi_version(&self) -> (u32, u32) {
        (self.services.abi_major(), self.services.abi_minor())
    }
}

/// Everything a plugin gets when it starts.
pub struct PluginContext {
    name: &'static str,
    config_json: String,
    host: Host,
}

impl PluginContext {
    /// Creates a context; used by the export macro and by tests.
    pub fn new(name: &'static str, config_json: String, host: Host) -> Self {
        Self { name, config_json, host }
    }

    /// The plugin's name (its config key).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The plugin's config subtree as JSON (`null` for an empty section).
    pub fn config_json(&self) -> &str {
        &self.config_json
    }

    /// Deserializes the plugin's config. Errors name the plugin and the key,
    /// e.g. `invalid config for plugin 'zmq': plugins.apps.zmq.manage: invalid type ...`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        crate::config::parse_plugin_config(self.name, &self.config_json)
    }

    /// The host services.
    pub fn host(&self) -> Host {
        self.host
    }

    /// A new handle to the shared inbound queue.
    pub fn inq(&self) -> Queue {
        self.host.inq()
    }
}

/// Spawns a named plugin thread whose panic is caught and reported to the
/// host (which then marks the plugin as failed) instead of vanishing.
pub fn spawn_thread<F>(host: Host, name: &str, f: F) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnOnce() + Send + 'static,
{
    let thread_name = name.to_string();
    std::thread::Builder::new().name(thread_name.clone()).spawn(move || {
        if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
            let msg = format!("thread '{thread_name}' panicked: {}", panic_message(&p));
            log::error!("{msg}");
            host.report_failure(&msg);
        }
    })
}

/// Extracts the message of a caught panic payload.
pub fn panic_message(p: &Box<dyn Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    }
}

fn guarded<R>(f: impl FnOnce() -> Result<R, PluginError>) -> RResult<R, PluginError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => RResult::ROk(v),
        Ok(Err(e)) => RResult::RErr(e),
        Err(p) => RResult::RErr(PluginError::panicked(panic_message(&p))),
    }
}

/// Implementation details of [`crate::export_plugin!`]; not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;
    use abi_stable::prefix_type::PrefixTypeTrait;

    unsafe fn obj<'a, T>(state: *const c_void) -> &'a T {
        &*(state as *const T)
    }

    unsafe extern "C" fn bb_subscribe<T: Backbone>(
        state: *const c_void,
        topic: RStr<'_>,
        queue: &Queue,
    ) -> RResult<(), PluginError> {
        guarded(|| obj::<T>(state).subscribe(topic.as_str(), queue.clone()))
    }

    unsafe extern "C" fn bb_unsubscribe<T: Backbone>(
        state: *const c_void,
        topic: RStr<'_>,
        queue: &Queue,
    ) -> RResult<(), PluginError> {
        guarded(|| obj::<T>(state).unsubscribe(topic.as_str(), queue))
    }

    unsafe extern "C" fn bb_snapshot(_: *const c_void, _: &Message) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    unsafe extern "C" fn bb_stop<T: Backbone>(state: *const c_void) -> RResult<(), PluginError> {
        guarded(|| obj::<T>(state).stop())
    }

    unsafe extern "C" fn app_subscribe(_: *const c_void, _: RStr<'_>, _: &Queue) -> RResult<(), PluginError> {
        RResult::RErr(PluginError::new("an app plugin does not route subscriptions"))
    }

    unsafe extern "C" fn app_snapshot<T: App>(state: *const c_void, request: &Message) -> RResult<(), PluginError> {
        guarded(|| obj::<T>(state).snapshot(request))
    }

    unsafe extern "C" fn app_stop<T: App>(state: *const c_void) -> RResult<(), PluginError> {
        guarded(|| obj::<T>(state).stop())
    }

    unsafe extern "C" fn destroy<T>(state: *const c_void) {
        // Dropping plugin state may run arbitrary code; never unwind into the host.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(Box::from_raw(state as *mut T))));
    }

    /// Installs the logger, runs `init` and wraps the result with `vtable`,
    /// all inside `catch_unwind`.
    fn entry<T>(
        services: HostServices_Ref,
        config_json: RStr<'_>,
        name: &'static str,
        init: fn(PluginContext) -> Result<T, PluginError>,
        vtable: impl FnOnce() -> PluginVTable,
    ) -> RResult<PluginInstance, PluginError> {
        guarded(|| {
            crate::logging::install_forwarding_logger(services, name);
            let ctx = PluginContext::new(name, config_json.as_str().to_string(), Host::from_services(services));
            let value = init(ctx)?;
            let state = Box::into_raw(Box::new(value)) as *const c_void;
            Ok(PluginInstance { state, vtable: vtable().leak_into_prefix() })
        })
    }

    /// Entry of a backbone plugin.
    pub fn backbone_entry<T: Backbone>(
        services: HostServices_Ref,
        config_json: RStr<'_>,
        name: &'static str,
        init: fn(PluginContext) -> Result<T, PluginError>,
    ) -> RResult<PluginInstance, PluginError> {
        entry(services, config_json, name, init, || PluginVTable {
            subscribe: bb_subscribe::<T>,
            unsubscribe: bb_unsubscribe::<T>,
            snapshot: bb_snapshot,
            stop: bb_stop::<T>,
            destroy: destroy::<T>,
        })
    }

    /// Entry of an app plugin.
    pub fn app_entry<T: App>(
        services: HostServices_Ref,
        config_json: RStr<'_>,
        name: &'static str,
        init: fn(PluginContext) -> Result<T, PluginError>,
    ) -> RResult<PluginInstance, PluginError> {
        entry(services, config_json, name, init, || PluginVTable {
            subscribe: app_subscribe,
            unsubscribe: app_subscribe,
            snapshot: app_snapshot::<T>,
            stop: app_stop::<T>,
            destroy: destroy::<T>,
        })
    }
}

/// Exports a plugin from a `cdylib` crate.
///
/// ```ignore
/// use threatbus_plugin_api::{export_plugin, App, PluginContext, PluginError};
///
/// struct MyApp;
/// impl App for MyApp {
///     fn stop(&self) -> Result<(), PluginError> { Ok(()) }
/// }
/// fn start(ctx: PluginContext) -> Result<MyApp, PluginError> {
///     log::info!("started with {}", ctx.config_json());
///     Ok(MyApp)
/// }
/// export_plugin!(app, "myapp", start);
/// ```
///
/// The first argument is `app` or `backbone`, the second the plugin name
/// (the config key, `[a-z0-9_-]+`), the third a
/// `fn(PluginContext) -> Result<T, PluginError>` where `T: App` or
/// `T: Backbone`. Every call into the plugin is wrapped in `catch_unwind`.
#[macro_export]
macro_rules! export_plugin {
    (app, $name:literal, $init:path) => {
        $crate::export_plugin!(@emit APP, app_entry, $name, $init);
    };
    (backbone, $name:literal, $init:path) => {
        $crate::export_plugin!(@emit BACKBONE, backbone_entry, $name, $init);
    };
    (@emit $kind:ident, $entry:ident, $name:literal, $init:path) => {
        #[doc(hidden)]
        unsafe extern "C" fn __threatbus_plugin_entry(
            host: $crate::abi::HostServices_Ref,
            config_json: $crate::abi_stable::std_types::RStr<'_>,
        ) -> $crate::abi_stable::std_types::RResult<$crate::abi::PluginInstance, $crate::PluginError> {
            $crate::plugin::__private::$entry(host, config_json, $name, $init)
        }

        /// The plugin declaration read by the threatbus host.
        #[unsafe(no_mangle)]
        pub static THREATBUS_PLUGIN: $crate::abi::PluginDeclaration = $crate::abi::PluginDeclaration::new(
            $crate::abi::PluginKind::$kind,
            concat!($name, "\0"),
            concat!(env!("CARGO_PKG_VERSION"), "\0"),
            __threatbus_plugin_entry,
        );
    };
}
