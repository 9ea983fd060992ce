//! The binary contract between the `threatbus` host and its plugins.
//!
//! Layer 0 is [`PluginDeclaration`]: a frozen `#[repr(C)]` static that the
//! host reads before it calls any plugin code. Layer 1 is the set of
//! `abi_stable` types behind it ([`HostServices`], [`PluginVTable`],
//! [`Queue`](crate::Queue), [`Message`](crate::Message)), whose layout the host
//! checks against its own copy with `abi_stable`'s layout checker.
//!
//! # Versioning rules
//! * `ABI_MAJOR` changes only when something is removed, renamed, reordered
//!   or changes type. Host and plugin majors must be equal.
//! * `ABI_MINOR` grows when a field is appended to a prefix type
//!   ([`HostServices`], [`PluginVTable`], [`QueueVTable`](crate::queue::QueueVTable))
//!   after its last field. A host accepts plugins whose minor is equal or
//!   lower than its own; it reads appended fields through `Option` accessors.
//! * The declaration struct itself never changes shape.

#![allow(non_camel_case_types)]

use std::ffi::{c_char, c_void, CStr};

use abi_stable::{
    std_types::{ROption, RResult, RStr, RString},
    StableAbi,
};

use crate::{logging::FfiLogRecord, Message, Queue};

/// Magic bytes at the start of every [`PluginDeclaration`].
pub const PLUGIN_MAGIC: [u8; 16] = *b"THREATBUS-PLUGIN";
/// Name of the exported declaration symbol.
pub const DECLARATION_SYMBOL: &[u8] = b"THREATBUS_PLUGIN\0";
/// Major version of the plugin ABI implemented by this crate.
pub const ABI_MAJOR: u32 = 1;
/// Minor version of the plugin ABI implemented by this crate.
pub const ABI_MINOR: u32 = 0;
/// Full version string of this `threatbus-plugin-api` crate.
pub const API_VERSION: &str = env!("CARGO_PKG_VERSION");

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

/// Signature of a plugin's entry function: start the plugin with its config
/// (the JSON of its YAML subtree) and return its instance.
pub type EntryFn =
    unsafe extern "C" fn(host: HostServices_Ref, config_json: RStr<'_>) -> RResult<PluginInstance, PluginError>;

/// The frozen layer-0 declaration every plugin exports as
/// `THREATBUS_PLUGIN`. Never changes shape; use [`crate::export_plugin!`]
/// to create it.
#[repr(C)]
pub struct PluginDeclaration {
    /// Always [`PLUGIN_MAGIC`].
    pub magic: [u8; 16],
    /// `size_of::<PluginDeclaration>()` of the plugin's build.
    pub decl_size: u32,
    /// [`ABI_MAJOR`] the plugin was built with.
    pub abi_major: u32,
    /// [`ABI_MINOR`] the plugin was built with.
    pub abi_minor: u32,
    /// [`PluginKind`] as an integer.
    pub kind: u32,
    /// 1 when the plugin was built with `panic = "unwind"`.
    pub panic_unwind: u32,
    /// Plugin name, NUL-terminated, `[a-z0-9_-]+`; the config key.
    pub name: *const c_char,
    /// The plugin crate's version, NUL-terminated.
    pub plugin_version: *const c_char,
    /// The `threatbus-plugin-api` version the plugin was built with.
    pub api_version: *const c_char,
    /// `&'static abi_stable::type_layout::TypeLayout` of [`AbiRoot`] as seen
    /// by the plugin, checked by the host before `entry` is called.
    pub abi_layout: *const c_void,
    /// Starts the plugin; never unwinds.
    pub entry: EntryFn,
}

// SAFETY: the declaration only points at immutable 'static data.
unsafe impl Sync for PluginDeclaration {}

impl PluginDeclaration {
    /// Builds a declaration; used by [`crate::export_plugin!`].
    /// `name` and `plugin_version` must end with a NUL byte.
    pub const fn new(kind: PluginKind, name: &'static str, plugin_version: &'static str, entry: EntryFn) -> Self {
        Self {
            magic: PLUGIN_MAGIC,
            decl_size: std::mem::size_of::<PluginDeclaration>() as u32,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            kind: kind.0,
            panic_unwind: cfg!(panic = "unwind") as u32,
            name: name.as_ptr() as *const c_char,
            plugin_version: plugin_version.as_ptr() as *const c_char,
            api_version: concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char,
            abi_layout: <AbiRoot as StableAbi>::LAYOUT as *const _ as *const c_void,
            entry,
        }
    }

    /// Reads a NUL-terminated string field, if present and UTF-8.
    ///
    /// # Safety
    /// `ptr` must be null or point to a NUL-terminated string.
    pub unsafe fn c_str(ptr: *const c_char) -> Option<&'static str> {
        if ptr.is_null() {
            None
        } else {
            CStr::from_ptr(ptr).to_str().ok()
        }
    }
}

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

/// Services the host offers to a plugin. Passed to the entry function and
/// valid for the lifetime of the process.
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = HostServices_Ref)))]
#[sabi(missing_field(panic))]
pub struct HostServices {
    /// The host's [`ABI_MAJOR`].
    pub abi_major: u32,
    /// The host's [`ABI_MINOR`].
    pub abi_minor: u32,
    /// Opaque host context; pass it back to every callback.
    pub ctx: *const c_void,
    /// Returns a new handle to the shared inbound queue (`inq`).
    pub inq: extern "C" fn(ctx: *const c_void) -> Queue,
    /// Subscribes `queue` to `topic` on every backbone; with
    /// `snapshot_secs > 0` also requests a snapshot and returns its id.
    pub subscribe: extern "C" fn(
        ctx: *const c_void,
        topic: RStr<'_>,
        queue: &Queue,
        snapshot_secs: u64,
    ) -> RResult<ROption<RString>, RString>,
    /// Removes the subscription of `queue` to `topic` on every backbone.
    pub unsubscribe: extern "C" fn(ctx: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), RString>,
    /// Whether a record at `level` (1=error..5=trace) for `target` would be logged.
    pub log_enabled: extern "C" fn(level: u8, target: RStr<'_>) -> bool,
    /// Emits a log record through the host's logger.
    pub log: extern "C" fn(record: &FfiLogRecord<'_>),
    /// Flushes the host's logger.
    pub log_flush: extern "C" fn(),
    /// The host's maximum log level (0=off..5=trace).
    pub log_max_level: extern "C" fn() -> u8,
    /// Reports that a plugin thread failed (e.g. panicked); the host marks
    /// the plugin as failed.
    #[sabi(last_prefix_field)]
    pub report_failure: extern "C" fn(ctx: *const c_void, message: RStr<'_>),
}

/// Functions the host calls on a running plugin. Every function is
/// panic-safe (built by [`crate::export_plugin!`]).
#[repr(C)]
#[derive(StableAbi)]
#[sabi(kind(Prefix(prefix_ref = PluginVTable_Ref)))]
#[sabi(missing_field(panic))]
pub struct PluginVTable {
    /// Backbones: route messages of topics starting with `topic` to `queue`.
    pub subscribe:
        unsafe extern "C" fn(state: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), PluginError>,
    /// Backbones: stop routing `topic` to `queue`.
    pub unsubscribe:
        unsafe extern "C" fn(state: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), PluginError>,
    /// Apps: serve a snapshot request by putting envelopes into `inq`.
    pub snapshot: unsafe extern "C" fn(state: *const c_void, request: &Message) -> RResult<(), PluginError>,
    /// Stops all plugin threads; returns when they have ended.
    pub stop: unsafe extern "C" fn(state: *const c_void) -> RResult<(), PluginError>,
    /// Frees the instance state. Called at most once, after `stop`.
    #[sabi(last_prefix_field)]
    pub destroy: unsafe extern "C" fn(state: *const c_void),
}

/// A started plugin: its state and functions.
#[repr(C)]
#[derive(StableAbi)]
pub struct PluginInstance {
    /// Opaque plugin state, passed to every vtable function.
    pub state: *const c_void,
    /// The plugin's functions.
    pub vtable: PluginVTable_Ref,
}

// SAFETY: plugin state is `Send + Sync` (enforced by the export macro's bounds).
unsafe impl Send for PluginInstance {}
unsafe impl Sync for PluginInstance {}

/// Every type that crosses the boundary, so that one layout check covers
/// them all. Never constructed.
#[repr(C)]
#[derive(StableAbi)]
pub struct AbiRoot {
    /// Host services.
    pub host: HostServices_Ref,
    /// What `entry` returns.
    pub started: RResult<PluginInstance, PluginError>,
    /// The entry function.
    pub entry:
        unsafe extern "C" fn(host: HostServices_Ref, config_json: RStr<'_>) -> RResult<PluginInstance, PluginError>,
    /// Message handle.
    pub message: Message,
    /// Queue handle.
    pub queue: Queue,
    /// Log record.
    pub log_record: FfiLogRecord<'static>,
    /// Plugin kind.
    pub kind: PluginKind,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The declaration is frozen: these offsets are what every host reads.
    #[test]
    fn declaration_layout_is_frozen() {
        assert_eq!(std::mem::offset_of!(PluginDeclaration, magic), 0);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, decl_size), 16);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, abi_major), 20);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, abi_minor), 24);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, kind), 28);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, panic_unwind), 32);
        assert_eq!(std::mem::offset_of!(PluginDeclaration, name), 40);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(std::mem::size_of::<PluginDeclaration>(), 80);
    }

    #[test]
    fn api_version_matches_abi_constants() {
        let mut parts = API_VERSION.split('.').map(|p| p.parse::<u32>().unwrap());
        assert_eq!(parts.next(), Some(ABI_MAJOR));
        assert_eq!(parts.next(), Some(ABI_MINOR));
    }

    #[test]
    fn plugin_error_display() {
        assert_eq!(PluginError::new("boom").to_string(), "boom");
        assert!(PluginError::panicked("boom").is_panic());
        assert_eq!(PluginError::panicked("boom").to_string(), "panicked: boom");
    }
}
