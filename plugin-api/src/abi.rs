//! The binary contract between the `threatbus` host and its plugins.
//!
//! # What a plugin library exports
//! * [`PluginManifest`] as `THREATBUS_PLUGIN_MANIFEST`: plain bytes, no
//!   pointers. The host reads it from the ELF file *without loading it*
//!   (`plugins list`, `plugins inspect` and the start-up scan run no plugin
//!   code), then decides whether to load the library at all.
//! * [`PluginEntryPoint`] as `THREATBUS_PLUGIN_ENTRY`: read after `dlopen`,
//!   only for plugins the config names. It carries the `abi_stable` type
//!   layout of everything that crosses the boundary ([`AbiRootV1_0`]) and
//!   the entry function.
//!
//! Both are built only by [`crate::export_plugin!`].
//!
//! # The tables
//! [`HostServices`] (implemented by the host), [`PluginVTable`] (implemented
//! by the plugin) and [`QueueVTable`](crate::queue::QueueVTable) (implemented
//! by whichever side created the queue) are `#[repr(C)]` structs of
//! function pointers whose first field, `size`, is the size of the table as
//! its implementer built it. An entry appended in a later minor lies beyond
//! the `size` of an older implementer's table and reads as absent (`None`),
//! never as garbage and never as a panic.
//!
//! # Versioning rules
//! * [`ABI_MAJOR`] changes when anything is removed, renamed, reordered or
//!   changes type. Host and plugin majors must be equal.
//! * [`ABI_MINOR`] grows by one when entries are appended to the end of a
//!   table (or new types are added). Each minor has its own frozen layout
//!   root (`AbiRootV1_<minor>`, the previous root plus the new entries); a
//!   host keeps the roots of every minor up to its own and checks a
//!   plugin's layout against the root of the plugin's minor.
//! * A host of minor N loads plugins of minors 0 … N. A plugin of a higher
//!   minor is refused before its code is loaded, with a line saying to
//!   upgrade the host.
//! * [`PluginManifest`] and [`PluginEntryPoint`] never change shape.
//! * The ABI version is not the version of this crate: Rust-only additions
//!   to the SDK change the crate's version, not the ABI.
//!
//! # Worked example: ABI 1.1
//! ABI 1.1 let plugins report metrics. What it took:
//! 1. [`HostServices::register_metric`] appended after `log_max_level`, the
//!    last 1.0 entry ([`HOST_SERVICES_V1_0_SIZE`] = its offset), with its
//!    types ([`MetricKind`], [`MetricLabel`]);
//! 2. [`AbiRootV1_1`]: the frozen [`AbiRootV1_0`] plus the new signature;
//!    [`layout_of_minor`] knows both, and the host checks a plugin against
//!    the root of the plugin's own minor;
//! 3. `ABI_MINOR` = 1, the crate's version 1.1.0, and the Debian relation
//!    `threatbus-plugin-abi-1 (= 1.1)` / `(>= 1.1)`;
//! 4. the SDK reads the entry with [`read_entry`], so in a 1.0 host
//!    `Host::counter` returns a detached counter instead of calling past the
//!    end of the table. A plugin built with this SDK still declares 1.1 and
//!    is refused by a 1.0 host before it is loaded; a 1.0 plugin runs in a
//!    1.1 host unchanged, and the host's own counts cover its traffic.
//!
//! ABI 1.2 did the same for [`HostServices::offer_direct_inq`]: a backbone
//! that routes in-process offers a direct queue ([`Queue::direct`]), and
//! the host hands it to the apps as their `inq`, so that an app's message
//! is routed on the app's own thread. In an older host the SDK's
//! `Host::offer_direct_inq` returns false and the backbone simply keeps
//! reading `inq`; the host routes an older backbone's traffic through `inq`
//! as before.

use std::ffi::c_void;

use abi_stable::{
    library::AbiHeader,
    std_types::{ROption, RResult, RSlice, RStr, RString, RVec, Tuple2},
    type_layout::TypeLayout,
    StableAbi,
};

use crate::logging::FfiLogRecord;
use crate::message::{Message, MessageKind};
use crate::queue::{Queue, RecvStatus, SendStatus};

/// Magic bytes at the start of [`PluginManifest`] and [`PluginEntryPoint`].
pub const PLUGIN_MAGIC: [u8; 16] = *b"THREATBUS-PLUGIN";
/// Name of the exported [`PluginManifest`] symbol.
pub const MANIFEST_SYMBOL: &str = "THREATBUS_PLUGIN_MANIFEST";
/// Name of the exported [`PluginEntryPoint`] symbol.
pub const ENTRY_SYMBOL: &str = "THREATBUS_PLUGIN_ENTRY";
/// Major version of the plugin ABI this crate implements.
pub const ABI_MAJOR: u32 = 1;
/// Minor version of the plugin ABI this crate implements.
///
/// * 1.0: the first release.
/// * 1.1: [`HostServices::register_metric`] (plugins report counters and
///   gauges to the host's metrics).
/// * 1.2: [`HostServices::offer_direct_inq`] (a backbone that routes
///   in-process takes the apps' messages on their own threads).
#[cfg(not(feature = "abi-next"))]
pub const ABI_MINOR: u32 = 2;
/// Minor version of the plugin ABI this crate implements (a test build with
/// one appended table entry, see the `abi-next` feature).
#[cfg(feature = "abi-next")]
pub const ABI_MINOR: u32 = 3;
/// Version of this `threatbus-plugin-api` crate (not the ABI version).
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Capacity of [`PluginManifest::name`], including the terminating NUL.
pub const NAME_CAPACITY: usize = 64;
/// Capacity of the version fields of [`PluginManifest`], including the NUL.
pub const VERSION_CAPACITY: usize = 32;

/// What a plugin is: an *app* (talks to external tools) or a *backbone*
/// (routes messages between queues).
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct PluginKind(pub u32);

impl PluginKind {
    /// An app plugin (`plugins.apps.<name>` in the config).
    pub const APP: PluginKind = PluginKind(1);
    /// A backbone plugin (`plugins.backbones.<name>` in the config).
    pub const BACKBONE: PluginKind = PluginKind(2);

    /// `"app"`, `"backbone"`, or `None` for an unknown kind.
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            Self::APP => Some("app"),
            Self::BACKBONE => Some("backbone"),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// What the library exports
// ---------------------------------------------------------------------------

/// The frozen, pointer-free description of a plugin, readable from the
/// library file without loading it. Exported as `THREATBUS_PLUGIN_MANIFEST`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct PluginManifest {
    /// Always [`PLUGIN_MAGIC`].
    pub magic: [u8; 16],
    /// `size_of::<PluginManifest>()` of the plugin's build.
    pub manifest_size: u32,
    /// [`ABI_MAJOR`] the plugin was built with.
    pub abi_major: u32,
    /// [`ABI_MINOR`] the plugin was built with.
    pub abi_minor: u32,
    /// [`PluginKind`] as an integer.
    pub kind: u32,
    /// 1 when the plugin was built with `panic = "unwind"`.
    pub panic_unwind: u32,
    /// `abi_stable`'s own header (magic string and version), checked
    /// before any `abi_stable` type layout of the plugin is trusted.
    pub abi_stable_magic: [u8; 32],
    /// `abi_stable`'s ABI major version.
    pub abi_stable_major: u32,
    /// `abi_stable`'s ABI minor version.
    pub abi_stable_minor: u32,
    /// Plugin name, `[a-z0-9_-]+`, NUL-padded; the config key.
    pub name: [u8; NAME_CAPACITY],
    /// The plugin crate's version, NUL-padded.
    pub plugin_version: [u8; VERSION_CAPACITY],
    /// The `threatbus-plugin-api` crate version the plugin was built with.
    pub api_version: [u8; VERSION_CAPACITY],
}

/// Reads a NUL-padded string field of a manifest.
pub fn manifest_str(bytes: &[u8]) -> Option<&str> {
    let end = bytes.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&bytes[..end]).ok()
}

/// Whether `name` is a valid plugin name: `[a-z0-9_-]+`.
pub const fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

/// Copies `s` into a NUL-padded array; a compile-time error (in const
/// context) if it does not fit with its NUL or contains a NUL.
const fn fixed<const N: usize>(s: &str, what: &str) -> [u8; N] {
    let b = s.as_bytes();
    if b.len() >= N {
        panic!("{}", what);
    }
    let mut out = [0u8; N];
    let mut i = 0;
    while i < b.len() {
        if b[i] == 0 {
            panic!("{}", what);
        }
        out[i] = b[i];
        i += 1;
    }
    out
}

impl PluginManifest {
    /// Builds the manifest; only [`crate::export_plugin!`] calls this, in a
    /// `static`, so every check below fails the plugin's build.
    #[doc(hidden)]
    pub const fn __new(kind: PluginKind, name: &str, plugin_version: &str) -> Self {
        if !is_valid_name(name) {
            panic!("plugin names must match [a-z0-9_-]+");
        }
        let header = AbiHeader::VALUE;
        Self {
            magic: PLUGIN_MAGIC,
            manifest_size: std::mem::size_of::<PluginManifest>() as u32,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            kind: kind.0,
            panic_unwind: cfg!(panic = "unwind") as u32,
            abi_stable_magic: header.magic_string,
            abi_stable_major: header.abi_major,
            abi_stable_minor: header.abi_minor,
            name: fixed(name, "plugin names must be shorter than 64 bytes"),
            plugin_version: fixed(plugin_version, "plugin versions must be shorter than 32 bytes"),
            api_version: fixed(API_VERSION, "plugin-api version too long"),
        }
    }

    /// Whether the `abi_stable` header matches this build's `abi_stable`.
    pub fn abi_stable_compatible(&self) -> bool {
        let ours = AbiHeader::VALUE;
        self.abi_stable_magic == ours.magic_string
            && self.abi_stable_major == ours.abi_major
            && (ours.abi_major != 0 || self.abi_stable_minor == ours.abi_minor)
    }
}

/// Signature of a plugin's entry function: start the plugin with the host's
/// services and its config (the JSON of its YAML subtree).
///
/// # Safety
/// `host` must point to a [`HostServices`] table that stays valid for the
/// rest of the process.
pub type EntryFn =
    unsafe extern "C" fn(host: *const HostServices, config_json: RStr<'_>) -> RResult<PluginInstance, PluginError>;

/// What the host reads after loading a configured plugin. Exported as
/// `THREATBUS_PLUGIN_ENTRY`; never changes shape.
#[repr(C)]
#[non_exhaustive]
pub struct PluginEntryPoint {
    /// Always [`PLUGIN_MAGIC`].
    pub magic: [u8; 16],
    /// [`ABI_MAJOR`] the plugin was built with (equal to the manifest's).
    pub abi_major: u32,
    /// [`ABI_MINOR`] the plugin was built with (equal to the manifest's).
    pub abi_minor: u32,
    /// The `abi_stable` layout of the layout root of `abi_minor` as the
    /// plugin sees it.
    pub layout: &'static TypeLayout,
    /// Starts the plugin; never unwinds.
    pub entry: EntryFn,
}

impl PluginEntryPoint {
    /// Builds the entry point; only [`crate::export_plugin!`] calls this.
    #[doc(hidden)]
    pub const fn __new(entry: EntryFn) -> Self {
        Self { magic: PLUGIN_MAGIC, abi_major: ABI_MAJOR, abi_minor: ABI_MINOR, layout: current_layout(), entry }
    }
}

// ---------------------------------------------------------------------------
// Errors and instances
// ---------------------------------------------------------------------------

/// Why a call into a plugin failed.
#[repr(C)]
#[derive(StableAbi, Clone, Debug, PartialEq, Eq)]
pub struct PluginError {
    /// [`PluginError::FAILED`] or [`PluginError::PANICKED`].
    pub kind: u32,
    /// Human-readable explanation.
    pub message: RString,
}

impl PluginError {
    /// The plugin returned an error.
    pub const FAILED: u32 = 1;
    /// The plugin panicked; the host stops calling it.
    pub const PANICKED: u32 = 2;

    /// An ordinary error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self { kind: Self::FAILED, message: RString::from(message.into()) }
    }

    /// An error that records a caught panic.
    pub fn panicked(message: impl Into<String>) -> Self {
        Self { kind: Self::PANICKED, message: RString::from(message.into()) }
    }

    /// Whether this error records a panic.
    pub fn is_panic(&self) -> bool {
        self.kind == Self::PANICKED
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_panic() {
            write!(f, "panicked: {}", self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

impl std::error::Error for PluginError {}

/// A started plugin: its state and its [`PluginVTable`].
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginInstance {
    /// Opaque plugin state, passed to every [`PluginVTable`] function.
    pub state: *const c_void,
    /// `*const PluginVTable`, valid for the rest of the process.
    pub vtable: *const c_void,
}

// SAFETY: the export macro only builds instances from `Send + Sync` state.
unsafe impl Send for PluginInstance {}
// SAFETY: see `Send`.
unsafe impl Sync for PluginInstance {}

// ---------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------

/// Reads the entry at `offset` of a table whose implementer built `size`
/// bytes of it; `None` if the table ends before the entry (it was appended
/// in a later minor than the implementer's).
///
/// # Safety
/// `table` must point to a table of at least `size` readable bytes, and the
/// bytes at `offset` must hold a `T` if they lie within `size`.
pub unsafe fn read_entry<T: Copy>(table: *const u8, size: usize, offset: usize) -> Option<T> {
    if offset.checked_add(std::mem::size_of::<T>())? > size {
        return None;
    }
    // SAFETY: in bounds of the implementer's table (checked above), which
    // holds a `T` there (caller's promise); tables may be packed by older
    // layouts, so read unaligned.
    Some(unsafe { std::ptr::read_unaligned(table.add(offset).cast::<T>()) })
}

/// Host: returns a new handle to the shared inbound queue (`inq`).
pub type InqFn = unsafe extern "C" fn(ctx: *const c_void) -> Queue;
/// Host: validates `json` as a message of `kind` (or, with kind 0, of the
/// kind its `type` field names) and returns it in canonical form.
pub type ParseFn =
    unsafe extern "C" fn(ctx: *const c_void, kind: MessageKind, json: RStr<'_>) -> RResult<Message, RString>;
/// Host: subscribes `queue` to `topic` on every backbone; with
/// `snapshot_secs > 0` also requests a snapshot and returns its id.
pub type SubscribeFn = unsafe extern "C" fn(
    ctx: *const c_void,
    topic: RStr<'_>,
    queue: &Queue,
    snapshot_secs: u64,
) -> RResult<ROption<RString>, RString>;
/// Host: removes the subscription of `queue` to `topic` on every backbone.
pub type UnsubscribeFn =
    unsafe extern "C" fn(ctx: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), RString>;
/// Host: a plugin thread failed; the host marks the plugin as failed.
pub type ReportFailureFn = unsafe extern "C" fn(ctx: *const c_void, message: RStr<'_>);
/// Host: whether a record at `level` (1=error..5=trace) for `target` would be logged.
pub type LogEnabledFn = extern "C" fn(level: u8, target: RStr<'_>) -> bool;
/// Host: emits a log record.
pub type LogFn = extern "C" fn(record: &FfiLogRecord<'_>);
/// Host: flushes the logger.
pub type LogFlushFn = extern "C" fn();
/// Host: the maximum log level (0=off..5=trace).
pub type LogMaxLevelFn = extern "C" fn() -> u8;

/// What a metric registered through [`RegisterMetricFn`] is.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct MetricKind(pub u32);

impl MetricKind {
    /// A value that only grows; the host returns an `AtomicU64`.
    pub const COUNTER: MetricKind = MetricKind(1);
    /// A value that goes up and down; the host returns an `AtomicI64`.
    pub const GAUGE: MetricKind = MetricKind(2);
}

/// One label of a metric: `(name, value)`.
pub type MetricLabel<'a> = Tuple2<RStr<'a>, RStr<'a>>;

/// Host (ABI 1.1): registers a metric of the calling plugin, exposed as
/// `threatbus_<name>` with the given labels and a `plugin` label, and
/// returns the address of its value: an `AtomicU64` (counters) or an
/// `AtomicI64` (gauges), valid for the rest of the process, that the plugin
/// updates with atomic operations only. Registering the same name and
/// labels again returns the same address. The error says which rule a
/// name, help text or label broke.
pub type RegisterMetricFn = unsafe extern "C" fn(
    ctx: *const c_void,
    kind: MetricKind,
    name: RStr<'_>,
    help: RStr<'_>,
    labels: RSlice<'_, MetricLabel<'_>>,
) -> RResult<*const c_void, RString>;

/// Host (ABI 1.2): a backbone offers `queue`, a direct queue
/// ([`Queue::direct`]), to be the `inq` of the apps. Returns whether the
/// host took the offer; it uses the queue only if this is the one backbone
/// running, and closes it after the apps stopped.
pub type OfferDirectInqFn = unsafe extern "C" fn(ctx: *const c_void, queue: &Queue) -> bool;

/// Services the host offers to a plugin, valid for the rest of the process.
/// Implemented by the host; entries after the ABI 1.0 ones are read through
/// [`read_entry`].
#[repr(C)]
pub struct HostServices {
    /// Size of this table as the host built it.
    pub size: usize,
    /// The host's [`ABI_MAJOR`].
    pub abi_major: u32,
    /// The host's [`ABI_MINOR`].
    pub abi_minor: u32,
    /// Opaque host context; pass it back to every entry that takes `ctx`.
    pub ctx: *const c_void,
    /// See [`InqFn`].
    pub inq: InqFn,
    /// See [`ParseFn`].
    pub parse: ParseFn,
    /// See [`SubscribeFn`].
    pub subscribe: SubscribeFn,
    /// See [`UnsubscribeFn`].
    pub unsubscribe: UnsubscribeFn,
    /// See [`ReportFailureFn`].
    pub report_failure: ReportFailureFn,
    /// See [`LogEnabledFn`].
    pub log_enabled: LogEnabledFn,
    /// See [`LogFn`].
    pub log: LogFn,
    /// See [`LogFlushFn`].
    pub log_flush: LogFlushFn,
    /// See [`LogMaxLevelFn`].
    pub log_max_level: LogMaxLevelFn,
    /// See [`RegisterMetricFn`]. Since ABI 1.1: absent in hosts of 1.0, so
    /// read it through [`read_entry`] (the SDK's `Host::counter` does).
    pub register_metric: RegisterMetricFn,
    /// See [`OfferDirectInqFn`]. Since ABI 1.2: read it through
    /// [`read_entry`] (the SDK's `Host::offer_direct_inq` does).
    pub offer_direct_inq: OfferDirectInqFn,
    /// Test-only entry of the `abi-next` build (ABI 1.3 of the tests).
    #[cfg(feature = "abi-next")]
    pub next_host_entry: NextFn,
}

// SAFETY: the host's entries are thread-safe and `ctx` points to host state
// that is shared between threads by design.
unsafe impl Send for HostServices {}
// SAFETY: see `Send`.
unsafe impl Sync for HostServices {}

/// The size of [`HostServices`] in ABI 1.0; smaller tables are refused.
pub const HOST_SERVICES_V1_0_SIZE: usize =
    std::mem::offset_of!(HostServices, log_max_level) + std::mem::size_of::<LogMaxLevelFn>();

/// The size of [`HostServices`] in ABI 1.1.
pub const HOST_SERVICES_V1_1_SIZE: usize =
    std::mem::offset_of!(HostServices, register_metric) + std::mem::size_of::<RegisterMetricFn>();

/// The size of [`HostServices`] in ABI 1.2.
pub const HOST_SERVICES_V1_2_SIZE: usize =
    std::mem::offset_of!(HostServices, offer_direct_inq) + std::mem::size_of::<OfferDirectInqFn>();

/// Plugin: backbones route messages of topics starting with `topic` to `queue`.
pub type PluginSubscribeFn =
    unsafe extern "C" fn(state: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), PluginError>;
/// Plugin: apps serve a snapshot request by putting envelopes into `inq`.
pub type PluginSnapshotFn = unsafe extern "C" fn(state: *const c_void, request: &Message) -> RResult<(), PluginError>;
/// Plugin: stops all plugin threads; returns when they have ended.
pub type PluginStopFn = unsafe extern "C" fn(state: *const c_void) -> RResult<(), PluginError>;
/// Plugin: frees the instance state; called at most once, after a
/// successful `stop`.
pub type PluginDestroyFn = unsafe extern "C" fn(state: *const c_void);
/// Test-only entry type of the `abi-next` build.
pub type NextFn = unsafe extern "C" fn(state: *const c_void) -> u32;

/// Functions the host calls on a running plugin; implemented by the plugin
/// (built by [`crate::export_plugin!`], every entry panic-safe).
#[repr(C)]
pub struct PluginVTable {
    /// Size of this table as the plugin built it.
    pub size: usize,
    /// Backbones: route `topic` to `queue`; apps: an error.
    pub subscribe: PluginSubscribeFn,
    /// Backbones: stop routing `topic` to `queue`; apps: an error.
    pub unsubscribe: PluginSubscribeFn,
    /// Apps: serve a snapshot request; backbones: nothing.
    pub snapshot: PluginSnapshotFn,
    /// Stops the plugin's threads.
    pub stop: PluginStopFn,
    /// Frees the state.
    pub destroy: PluginDestroyFn,
    /// Test-only entry of the `abi-next` build (ABI 1.3 of the tests).
    #[cfg(feature = "abi-next")]
    pub next_plugin_entry: NextFn,
}

/// The size of [`PluginVTable`] in ABI 1.0; smaller tables are refused.
pub const PLUGIN_VTABLE_V1_0_SIZE: usize =
    std::mem::offset_of!(PluginVTable, destroy) + std::mem::size_of::<PluginDestroyFn>();

/// One entry of a table for diagnostics: its name, the minor that added it
/// and its offset.
#[derive(Debug, Clone, Copy)]
pub struct TableEntry {
    /// The field name.
    pub name: &'static str,
    /// The ABI minor that appended it.
    pub since_minor: u32,
    /// Its byte offset in the table.
    pub offset: usize,
}

/// The [`PluginVTable`] entries appended after ABI 1.0, for the host to
/// say which ones a plugin's table lacks.
pub const PLUGIN_VTABLE_APPENDED: &[TableEntry] = &[
    #[cfg(feature = "abi-next")]
    TableEntry {
        name: "next_plugin_entry",
        since_minor: 3,
        offset: std::mem::offset_of!(PluginVTable, next_plugin_entry),
    },
];

// ---------------------------------------------------------------------------
// Layout roots
// ---------------------------------------------------------------------------

/// Every type and function signature that crosses the boundary in ABI 1.0,
/// so that one `abi_stable` layout check covers them all. Frozen: a later
/// minor adds a new root that contains this one. Never constructed.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiRootV1_0 {
    /// What the entry function returns.
    pub started: RResult<PluginInstance, PluginError>,
    /// The entry function (with the table pointer erased).
    pub entry: unsafe extern "C" fn(host: *const c_void, config_json: RStr<'_>) -> RResult<PluginInstance, PluginError>,
    /// Message handle.
    pub message: Message,
    /// Queue handle.
    pub queue: Queue,
    /// Log record.
    pub log_record: FfiLogRecord<'static>,
    /// Plugin kind.
    pub kind: PluginKind,
    /// Host table entry `inq`.
    pub host_inq: unsafe extern "C" fn(ctx: *const c_void) -> Queue,
    /// Host table entry `parse`.
    pub host_parse:
        unsafe extern "C" fn(ctx: *const c_void, kind: MessageKind, json: RStr<'_>) -> RResult<Message, RString>,
    /// Host table entry `subscribe`.
    pub host_subscribe: unsafe extern "C" fn(
        ctx: *const c_void,
        topic: RStr<'_>,
        queue: &Queue,
        snapshot_secs: u64,
    ) -> RResult<ROption<RString>, RString>,
    /// Host table entry `unsubscribe`.
    pub host_unsubscribe:
        unsafe extern "C" fn(ctx: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), RString>,
    /// Host table entry `report_failure`.
    pub host_report_failure: unsafe extern "C" fn(ctx: *const c_void, message: RStr<'_>),
    /// Host table entry `log_enabled`.
    pub host_log_enabled: extern "C" fn(level: u8, target: RStr<'_>) -> bool,
    /// Host table entry `log`.
    pub host_log: extern "C" fn(record: &FfiLogRecord<'_>),
    /// Host table entry `log_flush`.
    pub host_log_flush: extern "C" fn(),
    /// Host table entry `log_max_level`.
    pub host_log_max_level: extern "C" fn() -> u8,
    /// Plugin table entries `subscribe` and `unsubscribe`.
    pub plugin_subscribe:
        unsafe extern "C" fn(state: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), PluginError>,
    /// Plugin table entry `snapshot`.
    pub plugin_snapshot: unsafe extern "C" fn(state: *const c_void, request: &Message) -> RResult<(), PluginError>,
    /// Plugin table entry `stop`.
    pub plugin_stop: unsafe extern "C" fn(state: *const c_void) -> RResult<(), PluginError>,
    /// Plugin table entry `destroy`.
    pub plugin_destroy: unsafe extern "C" fn(state: *const c_void),
    /// Queue table entry `retain`.
    pub queue_retain: unsafe extern "C" fn(state: *const c_void) -> *const c_void,
    /// Queue table entry `release`.
    pub queue_release: unsafe extern "C" fn(state: *const c_void),
    /// Queue table entry `send`.
    pub queue_send: unsafe extern "C" fn(state: *const c_void, msg: Message, timeout_ms: u64) -> SendStatus,
    /// Queue table entry `recv`.
    pub queue_recv:
        unsafe extern "C" fn(state: *const c_void, timeout_ms: u64, out: &mut ROption<Message>) -> RecvStatus,
    /// Queue table entry `recv_batch`.
    pub queue_recv_batch:
        unsafe extern "C" fn(state: *const c_void, max: usize, timeout_ms: u64, out: &mut RVec<Message>) -> RecvStatus,
    /// Queue table entries `close`.
    pub queue_close: unsafe extern "C" fn(state: *const c_void),
    /// Queue table entry `is_closed`.
    pub queue_is_closed: unsafe extern "C" fn(state: *const c_void) -> bool,
    /// Queue table entries `len` and `capacity`.
    pub queue_count: unsafe extern "C" fn(state: *const c_void) -> usize,
    /// Queue table entry `dropped`.
    pub queue_dropped: unsafe extern "C" fn(state: *const c_void) -> u64,
    /// Queue send status.
    pub send_status: SendStatus,
    /// Queue receive status.
    pub recv_status: RecvStatus,
    /// Receive buffer of one message.
    pub recv_one: ROption<Message>,
    /// Receive buffer of a batch.
    pub recv_many: RVec<Message>,
}

/// The root's inline signatures (written out because the layout derive
/// needs them inline) are the same types as the table entries'.
#[allow(dead_code)]
fn root_signatures_match_tables(r: &AbiRootV1_0) {
    let _: (InqFn, ParseFn, SubscribeFn, UnsubscribeFn, ReportFailureFn) =
        (r.host_inq, r.host_parse, r.host_subscribe, r.host_unsubscribe, r.host_report_failure);
    let _: (LogEnabledFn, LogFn, LogFlushFn, LogMaxLevelFn) =
        (r.host_log_enabled, r.host_log, r.host_log_flush, r.host_log_max_level);
    let _: (PluginSubscribeFn, PluginSnapshotFn, PluginStopFn, PluginDestroyFn) =
        (r.plugin_subscribe, r.plugin_snapshot, r.plugin_stop, r.plugin_destroy);
    use crate::queue::*;
    let _: (RetainFn, ReleaseFn, SendFn, RecvFn, RecvBatchFn) =
        (r.queue_retain, r.queue_release, r.queue_send, r.queue_recv, r.queue_recv_batch);
    let _: (QueueFn, IsClosedFn, CountFn, DroppedFn) =
        (r.queue_close, r.queue_is_closed, r.queue_count, r.queue_dropped);
}

/// Every type and signature that crosses the boundary in ABI 1.1: the
/// frozen 1.0 root plus what 1.1 appended. Frozen; never constructed.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiRootV1_1 {
    /// Everything of ABI 1.0.
    pub v1_0: AbiRootV1_0,
    /// Host table entry `register_metric`.
    pub host_register_metric: unsafe extern "C" fn(
        ctx: *const c_void,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
        labels: RSlice<'_, Tuple2<RStr<'_>, RStr<'_>>>,
    ) -> RResult<*const c_void, RString>,
}

#[allow(dead_code)]
fn root_1_1_signatures_match_tables(r: &AbiRootV1_1) {
    let _: RegisterMetricFn = r.host_register_metric;
}

/// Every type and signature that crosses the boundary in ABI 1.2: the
/// frozen 1.1 root plus what 1.2 appended. Frozen; never constructed.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiRootV1_2 {
    /// Everything of ABI 1.1.
    pub v1_1: AbiRootV1_1,
    /// Host table entry `offer_direct_inq`.
    pub host_offer_direct_inq: unsafe extern "C" fn(ctx: *const c_void, queue: &Queue) -> bool,
}

#[allow(dead_code)]
fn root_1_2_signatures_match_tables(r: &AbiRootV1_2) {
    let _: OfferDirectInqFn = r.host_offer_direct_inq;
}

/// The layout root of the `abi-next` test build: ABI 1.2 plus its entries.
#[cfg(feature = "abi-next")]
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiRootV1_3 {
    /// Everything of ABI 1.2.
    pub v1_2: AbiRootV1_2,
    /// The appended entries (host and plugin tables).
    pub next: unsafe extern "C" fn(state: *const c_void) -> u32,
}

/// The layout root of the given minor of [`ABI_MAJOR`], if this build knows
/// it (every minor up to [`ABI_MINOR`]).
pub fn layout_of_minor(minor: u32) -> Option<&'static TypeLayout> {
    match minor {
        0 => Some(<AbiRootV1_0 as StableAbi>::LAYOUT),
        1 => Some(<AbiRootV1_1 as StableAbi>::LAYOUT),
        2 => Some(<AbiRootV1_2 as StableAbi>::LAYOUT),
        #[cfg(feature = "abi-next")]
        3 => Some(<AbiRootV1_3 as StableAbi>::LAYOUT),
        _ => None,
    }
}

const fn current_layout() -> &'static TypeLayout {
    #[cfg(not(feature = "abi-next"))]
    {
        <AbiRootV1_2 as StableAbi>::LAYOUT
    }
    #[cfg(feature = "abi-next")]
    {
        <AbiRootV1_3 as StableAbi>::LAYOUT
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// The manifest and the entry point are frozen: these offsets are what
    /// every host reads.
    #[test]
    fn exported_structs_are_frozen() {
        assert_eq!(offset_of!(PluginManifest, magic), 0);
        assert_eq!(offset_of!(PluginManifest, manifest_size), 16);
        assert_eq!(offset_of!(PluginManifest, abi_major), 20);
        assert_eq!(offset_of!(PluginManifest, abi_minor), 24);
        assert_eq!(offset_of!(PluginManifest, kind), 28);
        assert_eq!(offset_of!(PluginManifest, panic_unwind), 32);
        assert_eq!(offset_of!(PluginManifest, abi_stable_magic), 36);
        assert_eq!(offset_of!(PluginManifest, abi_stable_major), 68);
        assert_eq!(offset_of!(PluginManifest, abi_stable_minor), 72);
        assert_eq!(offset_of!(PluginManifest, name), 76);
        assert_eq!(offset_of!(PluginManifest, plugin_version), 140);
        assert_eq!(offset_of!(PluginManifest, api_version), 172);
        assert_eq!(size_of::<PluginManifest>(), 204);
        #[cfg(target_pointer_width = "64")]
        {
            assert_eq!(offset_of!(PluginEntryPoint, layout), 24);
            assert_eq!(offset_of!(PluginEntryPoint, entry), 32);
            assert_eq!(size_of::<PluginEntryPoint>(), 40);
        }
    }

    /// The ABI 1.0 tables are frozen: entries are only ever appended.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn v1_0_tables_are_frozen() {
        let host = [
            offset_of!(HostServices, size),
            offset_of!(HostServices, abi_major),
            offset_of!(HostServices, abi_minor),
            offset_of!(HostServices, ctx),
            offset_of!(HostServices, inq),
            offset_of!(HostServices, parse),
            offset_of!(HostServices, subscribe),
            offset_of!(HostServices, unsubscribe),
            offset_of!(HostServices, report_failure),
            offset_of!(HostServices, log_enabled),
            offset_of!(HostServices, log),
            offset_of!(HostServices, log_flush),
            offset_of!(HostServices, log_max_level),
        ];
        assert_eq!(host, [0, 8, 12, 16, 24, 32, 40, 48, 56, 64, 72, 80, 88]);
        assert_eq!(HOST_SERVICES_V1_0_SIZE, 96);
        let plugin = [
            offset_of!(PluginVTable, size),
            offset_of!(PluginVTable, subscribe),
            offset_of!(PluginVTable, unsubscribe),
            offset_of!(PluginVTable, snapshot),
            offset_of!(PluginVTable, stop),
            offset_of!(PluginVTable, destroy),
        ];
        assert_eq!(plugin, [0, 8, 16, 24, 32, 40]);
        assert_eq!(PLUGIN_VTABLE_V1_0_SIZE, 48);
    }

    /// ABI 1.1 appended one host entry right after the 1.0 ones.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn v1_1_appends_register_metric() {
        assert_eq!(offset_of!(HostServices, register_metric), HOST_SERVICES_V1_0_SIZE);
        assert_eq!(HOST_SERVICES_V1_1_SIZE, 104);
        assert!(layout_of_minor(0).is_some() && layout_of_minor(1).is_some());
    }

    /// ABI 1.2 appended one host entry right after the 1.1 ones.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn v1_2_appends_offer_direct_inq() {
        assert_eq!(offset_of!(HostServices, offer_direct_inq), HOST_SERVICES_V1_1_SIZE);
        assert_eq!(HOST_SERVICES_V1_2_SIZE, 112);
        assert!(layout_of_minor(2).is_some());
    }

    #[test]
    fn read_entry_respects_the_implementers_size() {
        let table: [u64; 3] = [24, 7, 9];
        let base = table.as_ptr().cast::<u8>();
        // SAFETY: `table` has 24 readable bytes holding u64s.
        unsafe {
            assert_eq!(read_entry::<u64>(base, 24, 8), Some(7));
            assert_eq!(read_entry::<u64>(base, 24, 16), Some(9));
            assert_eq!(read_entry::<u64>(base, 16, 16), None, "beyond an older implementer's table");
            assert_eq!(read_entry::<u64>(base, 24, usize::MAX), None);
        }
    }

    #[test]
    fn manifest_strings_and_names() {
        assert!(is_valid_name("zmq") && is_valid_name("a-b_9"));
        assert!(!is_valid_name("") && !is_valid_name("Zmq") && !is_valid_name("a b"));
        let m = PluginManifest::__new(PluginKind::APP, "zmq", "1.2.3");
        assert_eq!(manifest_str(&m.name), Some("zmq"));
        assert_eq!(manifest_str(&m.plugin_version), Some("1.2.3"));
        assert_eq!(manifest_str(&m.api_version), Some(API_VERSION));
        assert!(m.abi_stable_compatible());
        assert_eq!(manifest_str(&[b'a'; 4]), None, "no NUL");
    }

    #[test]
    fn plugin_error_display() {
        assert_eq!(PluginError::new("boom").to_string(), "boom");
        assert!(PluginError::panicked("boom").is_panic());
        assert_eq!(PluginError::panicked("boom").to_string(), "panicked: boom");
    }
}
