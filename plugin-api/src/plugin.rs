//! What plugin authors implement ([`App`], [`Backbone`]) and what they get
//! from the host ([`PluginContext`], [`Host`]).

use std::any::Any;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use abi_stable::std_types::{RResult, RStr};
use serde::de::DeserializeOwned;

use crate::abi::{HostServices, PluginError, PluginInstance, PluginVTable};
use crate::{Message, MessageKind, Queue};

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
    /// Serves a snapshot request (a `threatbus/snapshotrequest` message)
    /// by putting `threatbus/snapshotenvelope` messages into `inq`.
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
    services: &'static HostServices,
}

impl Host {
    /// Wraps the host's service table.
    ///
    /// # Safety
    /// `services` must point to a [`HostServices`] table of at least
    /// [`HOST_SERVICES_V1_0_SIZE`](crate::abi::HOST_SERVICES_V1_0_SIZE)
    /// bytes that stays valid for the rest of the process, as the entry
    /// function receives it.
    pub unsafe fn from_services(services: *const HostServices) -> Self {
        // SAFETY: the caller's promise; every ABI 1.0 entry is present.
        Self { services: unsafe { &*services } }
    }

    pub(crate) fn services(&self) -> &'static HostServices {
        self.services
    }

    /// A new handle to the shared inbound queue.
    pub fn inq(&self) -> Queue {
        // SAFETY: `ctx` is the host's context for this table's entries.
        unsafe { (self.services.inq)(self.services.ctx) }
    }

    /// Validates `json` as a message of `kind` in the host's data model
    /// and returns it in canonical form, ready for `inq`. The error says
    /// what is wrong with the input.
    pub fn parse(&self, kind: MessageKind, json: &str) -> Result<Message, String> {
        // SAFETY: as in `inq`; `json` outlives the call.
        match unsafe { (self.services.parse)(self.services.ctx, kind, RStr::from_str(json)) } {
            RResult::ROk(m) => Ok(m),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Like [`Host::parse`], with the kind taken from the `type` field.
    pub fn parse_any(&self, json: &str) -> Result<Message, String> {
        self.parse(MessageKind::ANY, json)
    }

    /// Subscribes `queue` to `topic` on every backbone. With a non-zero
    /// `snapshot` it also requests a snapshot of that age and returns its id.
    pub fn subscribe(&self, topic: &str, queue: &Queue, snapshot: Duration) -> Result<Option<String>, String> {
        // SAFETY: as in `inq`; `topic` and `queue` outlive the call.
        let r =
            unsafe { (self.services.subscribe)(self.services.ctx, RStr::from_str(topic), queue, snapshot.as_secs()) };
        match r {
            RResult::ROk(id) => Ok(id.into_option().map(Into::into)),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Removes a subscription made with [`Host::subscribe`].
    pub fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), String> {
        // SAFETY: as in `subscribe`.
        match unsafe { (self.services.unsubscribe)(self.services.ctx, RStr::from_str(topic), queue) } {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => Err(e.into()),
        }
    }

    /// Tells the host that this plugin failed (e.g. one of its threads died).
    pub fn report_failure(&self, message: &str) {
        // SAFETY: as in `subscribe`.
        unsafe { (self.services.report_failure)(self.services.ctx, RStr::from_str(message)) }
    }

    /// The host's plugin ABI version `(major, minor)`.
    pub fn abi_version(&self) -> (u32, u32) {
        (self.services.abi_major, self.services.abi_minor)
    }

    /// Registers a counter of this plugin (see [`crate::metrics`] for the
    /// rules), e.g. `host.counter("rabbitmq_reconnects", "Reconnections to
    /// the broker", &[])`. Call it once per series when the plugin starts.
    /// A host of ABI 1.0, or a name the host refuses (logged), gives a
    /// detached counter.
    pub fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> crate::Counter {
        match self.register_metric(crate::abi::MetricKind::COUNTER, name, help, labels) {
            // SAFETY: the host returns an `AtomicU64` for counters that
            // lives for the process.
            Some(cell) => unsafe { crate::Counter::from_cell(cell) },
            None => crate::Counter::detached(),
        }
    }

    /// Registers a gauge of this plugin; see [`Host::counter`].
    pub fn gauge(&self, name: &str, help: &str, labels: &[(&str, &str)]) -> crate::Gauge {
        match self.register_metric(crate::abi::MetricKind::GAUGE, name, help, labels) {
            // SAFETY: the host returns an `AtomicI64` for gauges that lives
            // for the process.
            Some(cell) => unsafe { crate::Gauge::from_cell(cell) },
            None => crate::Gauge::detached(),
        }
    }

    fn register_metric(
        &self,
        kind: crate::abi::MetricKind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Option<*const c_void> {
        let offset = std::mem::offset_of!(HostServices, register_metric);
        // SAFETY: `register_metric` (ABI 1.1 and later) is a `RegisterMetricFn`.
        let register = unsafe { self.appended_entry::<crate::abi::RegisterMetricFn>(offset) }?;
        let labels: Vec<crate::abi::MetricLabel<'_>> =
            labels.iter().map(|(k, v)| abi_stable::std_types::Tuple2(RStr::from_str(k), RStr::from_str(v))).collect();
        // SAFETY: an entry of this table, called with its context; every
        // borrowed argument outlives the call.
        let r = unsafe {
            register(
                self.services.ctx,
                kind,
                RStr::from_str(name),
                RStr::from_str(help),
                abi_stable::std_types::RSlice::from_slice(&labels),
            )
        };
        match r {
            RResult::ROk(cell) if !cell.is_null() => Some(cell),
            RResult::ROk(_) => None,
            RResult::RErr(e) => {
                log::warn!("metric '{name}' is not exposed: {e}");
                None
            }
        }
    }

    /// Backbones that route in-process: offers the host a direct queue
    /// that runs `sink` on the sending app's thread, so that apps' messages
    /// skip `inq` and the backbone's thread (see [`crate::DirectSink`]).
    /// Call it from the backbone's start function and keep reading `inq`:
    /// the host still puts its own messages there, and so does every app
    /// when the host declines the offer. Returns whether the host took it
    /// (false in hosts older than ABI 1.2). A panic in `sink` is reported
    /// as this plugin's failure.
    pub fn offer_direct_inq(&self, sink: impl crate::DirectSink) -> bool {
        let offset = std::mem::offset_of!(HostServices, offer_direct_inq);
        // SAFETY: `offer_direct_inq` (ABI 1.2 and later) is an `OfferDirectInqFn`.
        let Some(offer) = (unsafe { self.appended_entry::<crate::abi::OfferDirectInqFn>(offset) }) else {
            return false;
        };
        let queue = Queue::direct_for(sink, Some(*self));
        // SAFETY: an entry of this table, called with its context; the
        // queue outlives the call (the host keeps its own handle).
        unsafe { offer(self.services.ctx, &queue) }
    }

    /// The test-only entry of the `abi-next` build, if this host has it.
    #[cfg(feature = "abi-next")]
    pub fn next_host_entry(&self) -> Option<u32> {
        let offset = std::mem::offset_of!(HostServices, next_host_entry);
        // SAFETY: `next_host_entry` is a `NextFn`.
        let f = unsafe { self.appended_entry::<crate::abi::NextFn>(offset) }?;
        // SAFETY: an entry of this table, called with its context.
        Some(unsafe { f(self.services.ctx) })
    }

    /// The entry of the host's table at `offset`, one appended after ABI
    /// 1.0, or `None` when the host built its table without it (an older
    /// host).
    ///
    /// # Safety
    /// `offset` must be the offset of a [`HostServices`] field of type `T`.
    unsafe fn appended_entry<T: Copy>(&self, offset: usize) -> Option<T> {
        let table = (self.services as *const HostServices).cast::<u8>();
        // SAFETY: the host's table has `size` readable bytes, and
        // `read_entry` reads only within them; the caller's promise makes
        // `T` the type of what lies at `offset`.
        unsafe { crate::abi::read_entry::<T>(table, self.services.size, offset) }
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

    /// # Safety
    /// `state` must be the state pointer the entry function returned for `T`.
    unsafe fn obj<'a, T>(state: *const c_void) -> &'a T {
        // SAFETY: the caller's promise; the state lives until `destroy`.
        unsafe { &*(state as *const T) }
    }

    unsafe extern "C" fn bb_subscribe<T: Backbone>(
        state: *const c_void,
        topic: RStr<'_>,
        queue: &Queue,
    ) -> RResult<(), PluginError> {
        // SAFETY: the host passes back the state of this instance.
        guarded(|| unsafe { obj::<T>(state) }.subscribe(topic.as_str(), queue.clone()))
    }

    unsafe extern "C" fn bb_unsubscribe<T: Backbone>(
        state: *const c_void,
        topic: RStr<'_>,
        queue: &Queue,
    ) -> RResult<(), PluginError> {
        // SAFETY: the host passes back the state of this instance.
        guarded(|| unsafe { obj::<T>(state) }.unsubscribe(topic.as_str(), queue))
    }

    unsafe extern "C" fn bb_snapshot(_: *const c_void, _: &Message) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    unsafe extern "C" fn bb_stop<T: Backbone>(state: *const c_void) -> RResult<(), PluginError> {
        // SAFETY: the host passes back the state of this instance.
        guarded(|| unsafe { obj::<T>(state) }.stop())
    }

    unsafe extern "C" fn app_subscribe(_: *const c_void, _: RStr<'_>, _: &Queue) -> RResult<(), PluginError> {
        RResult::RErr(PluginError::new("an app plugin does not route subscriptions"))
    }

    unsafe extern "C" fn app_snapshot<T: App>(state: *const c_void, request: &Message) -> RResult<(), PluginError> {
        // SAFETY: the host passes back the state of this instance.
        guarded(|| unsafe { obj::<T>(state) }.snapshot(request))
    }

    unsafe extern "C" fn app_stop<T: App>(state: *const c_void) -> RResult<(), PluginError> {
        // SAFETY: the host passes back the state of this instance.
        guarded(|| unsafe { obj::<T>(state) }.stop())
    }

    unsafe extern "C" fn destroy<T>(state: *const c_void) {
        // Dropping plugin state may run arbitrary code; never unwind into the host.
        // SAFETY: `state` came from `Box::into_raw` in `entry`, and the
        // host calls `destroy` at most once.
        let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { Box::from_raw(state as *mut T) })));
    }

    /// Installs the logger, runs `init` and wraps the result with `vtable`,
    /// all inside `catch_unwind`.
    #[cfg(feature = "abi-next")]
    unsafe extern "C" fn next_plugin_entry(_: *const c_void) -> u32 {
        crate::abi::ABI_MINOR
    }

    /// Builds the table of a plugin type once; it lives for the process.
    fn leak_table(table: PluginVTable) -> *const c_void {
        Box::leak(Box::new(table)) as *const PluginVTable as *const c_void
    }

    /// Checks the host's table, installs the logger, runs `init` and wraps
    /// the result with `vtable`, all inside `catch_unwind`.
    ///
    /// # Safety
    /// `services` must be the table the host passes to the entry function.
    unsafe fn entry<T>(
        services: *const HostServices,
        config_json: RStr<'_>,
        name: &'static str,
        init: fn(PluginContext) -> Result<T, PluginError>,
        vtable: impl FnOnce() -> PluginVTable,
    ) -> RResult<PluginInstance, PluginError> {
        guarded(|| {
            // SAFETY: a host of ABI major 1 passes a table that starts with
            // its size and stays valid for the process.
            let size = unsafe { (*services).size };
            if size < crate::abi::HOST_SERVICES_V1_0_SIZE {
                return Err(PluginError::new(format!("the host's service table is too small ({size} bytes)")));
            }
            // SAFETY: checked above.
            let host = unsafe { Host::from_services(services) };
            crate::logging::install_forwarding_logger(host, name);
            let ctx = PluginContext::new(name, config_json.as_str().to_string(), host);
            let value = init(ctx)?;
            let state = Box::into_raw(Box::new(value)) as *const c_void;
            Ok(PluginInstance { state, vtable: leak_table(vtable()) })
        })
    }

    /// Entry of a backbone plugin.
    ///
    /// # Safety
    /// `services` must be the table the host passes to the entry function.
    pub unsafe fn backbone_entry<T: Backbone>(
        services: *const HostServices,
        config_json: RStr<'_>,
        name: &'static str,
        init: fn(PluginContext) -> Result<T, PluginError>,
    ) -> RResult<PluginInstance, PluginError> {
        // SAFETY: the caller's promise.
        unsafe {
            entry(services, config_json, name, init, || PluginVTable {
                size: std::mem::size_of::<PluginVTable>(),
                subscribe: bb_subscribe::<T>,
                unsubscribe: bb_unsubscribe::<T>,
                snapshot: bb_snapshot,
                stop: bb_stop::<T>,
                destroy: destroy::<T>,
                #[cfg(feature = "abi-next")]
                next_plugin_entry,
            })
        }
    }

    /// Entry of an app plugin.
    ///
    /// # Safety
    /// `services` must be the table the host passes to the entry function.
    pub unsafe fn app_entry<T: App>(
        services: *const HostServices,
        config_json: RStr<'_>,
        name: &'static str,
        init: fn(PluginContext) -> Result<T, PluginError>,
    ) -> RResult<PluginInstance, PluginError> {
        // SAFETY: the caller's promise.
        unsafe {
            entry(services, config_json, name, init, || PluginVTable {
                size: std::mem::size_of::<PluginVTable>(),
                subscribe: app_subscribe,
                unsubscribe: app_subscribe,
                snapshot: app_snapshot::<T>,
                stop: app_stop::<T>,
                destroy: destroy::<T>,
                #[cfg(feature = "abi-next")]
                next_plugin_entry,
            })
        }
    }
}

/// Exports a plugin from a `cdylib` crate: its manifest (read by the host
/// without loading the library) and its entry point.
///
/// ```
/// use threatbus_plugin_api::{export_plugin, App, PluginContext, PluginError};
///
/// struct MyApp;
/// impl App for MyApp {
///     fn stop(&self) -> Result<(), PluginError> {
///         Ok(())
///     }
/// }
/// fn start(ctx: PluginContext) -> Result<MyApp, PluginError> {
///     log::info!("started with {}", ctx.config_json());
///     Ok(MyApp)
/// }
/// export_plugin!(app, "myapp", start);
/// # fn main() {}
/// ```
///
/// The first argument is `app` or `backbone`, the second the plugin name
/// (the config key, `[a-z0-9_-]+`, checked at compile time), the third a
/// `fn(PluginContext) -> Result<T, PluginError>` where `T: App` or
/// `T: Backbone`. Every call into the plugin is wrapped in `catch_unwind`.
/// The crate's version (`CARGO_PKG_VERSION`) becomes the plugin version.
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
            host: *const $crate::abi::HostServices,
            config_json: $crate::abi_stable::std_types::RStr<'_>,
        ) -> $crate::abi_stable::std_types::RResult<$crate::abi::PluginInstance, $crate::PluginError> {
            // SAFETY: the host calls the entry with its service table.
            unsafe { $crate::plugin::__private::$entry(host, config_json, $name, $init) }
        }

        /// The plugin's manifest, read by the threatbus host from the file.
        #[unsafe(no_mangle)]
        #[used]
        pub static THREATBUS_PLUGIN_MANIFEST: $crate::abi::PluginManifest =
            $crate::abi::PluginManifest::__new($crate::abi::PluginKind::$kind, $name, env!("CARGO_PKG_VERSION"));

        /// The plugin's entry point, read by the threatbus host after loading.
        #[unsafe(no_mangle)]
        #[used]
        pub static THREATBUS_PLUGIN_ENTRY: $crate::abi::PluginEntryPoint =
            $crate::abi::PluginEntryPoint::__new(__threatbus_plugin_entry);
    };
}
