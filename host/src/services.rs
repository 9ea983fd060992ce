//! The host side of `HostServices`: the functions plugins call. None of
//! them may unwind into a plugin (a panic would abort the process), so each
//! catches panics of the host code it runs.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use std::sync::atomic::Ordering;

use threatbus_plugin_api::abi::{MetricKind, MetricLabel};
use threatbus_plugin_api::abi_stable::std_types::{ROption, RResult, RSlice, RStr, RString};
use threatbus_plugin_api::logging::{level_from_u8, FfiLogRecord};
use threatbus_plugin_api::{Message, MessageKind, Queue};

use crate::bus::{ffi_subscribe_result, PluginCtx};
use crate::validate::Rejection;

/// # Safety
/// `p` must be the `ctx` of a table made by `Bus::services_for`.
unsafe fn ctx<'a>(p: *const c_void) -> &'a PluginCtx {
    // SAFETY: the caller's promise; the context is leaked, so 'static.
    unsafe { &*(p as *const PluginCtx) }
}

/// The plugin's own handle to `inq`, which counts what it puts there.
pub unsafe extern "C" fn inq(p: *const c_void) -> Queue {
    // SAFETY: plugins pass back the `ctx` of their table.
    unsafe { ctx(p) }.inq.clone()
}

/// Validates in the host's data model, counting what the plugin handed in
/// and why the validator refused it.
pub unsafe extern "C" fn parse(p: *const c_void, kind: MessageKind, json: RStr<'_>) -> RResult<Message, RString> {
    // SAFETY: plugins pass back the `ctx` of their table.
    let stats = &unsafe { ctx(p) }.stats;
    let r = catch_unwind(|| {
        let json = json.as_str();
        let resolved = if kind == MessageKind::ANY { crate::validate::kind_named_in(json) } else { Ok(kind) };
        // Counted as received under the kind it names; input that names
        // none is counted with the unknown kind.
        stats.count_received(*resolved.as_ref().unwrap_or(&MessageKind::ANY));
        crate::validate::parse(resolved?, json)
    })
    .unwrap_or_else(|_| {
        Err(Rejection { reason: "validator_panicked", message: "the host's validator panicked on this input".into() })
    });
    match r {
        Ok(m) => RResult::ROk(m),
        Err(e) => {
            stats.count_invalid(e.reason_index());
            RResult::RErr(RString::from(e.message))
        }
    }
}

pub unsafe extern "C" fn subscribe(
    p: *const c_void,
    topic: RStr<'_>,
    queue: &Queue,
    snapshot_secs: u64,
) -> RResult<ROption<RString>, RString> {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let topic = topic.as_str();
        let tap = c.bus.tap(&c.stats, queue, topic);
        let r = c.bus.subscribe(topic, &tap, Duration::from_secs(snapshot_secs));
        match &r {
            Ok(Some(_)) => {
                c.stats.snapshot_requests.fetch_add(1, Ordering::Relaxed);
            }
            Ok(None) => {}
            Err(_) => {
                c.bus.untap(&c.stats.name, queue, topic);
            }
        }
        r
    }))
    .unwrap_or_else(|_| Err("host panicked while subscribing".into()));
    ffi_subscribe_result(r)
}

pub unsafe extern "C" fn unsubscribe(p: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), RString> {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    let r = catch_unwind(AssertUnwindSafe(|| match c.bus.untap(&c.stats.name, queue, topic.as_str()) {
        Some(tap) => c.bus.unsubscribe(topic.as_str(), &tap),
        // Never subscribed through this plugin: the backbones know nothing of it either.
        None => Ok(()),
    }))
    .unwrap_or_else(|_| Err("host panicked while unsubscribing".into()));
    match r {
        Ok(()) => RResult::ROk(()),
        Err(e) => RResult::RErr(RString::from(e)),
    }
}

pub unsafe extern "C" fn report_failure(p: *const c_void, message: RStr<'_>) {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    let _ =
        catch_unwind(AssertUnwindSafe(|| crate::bus::mark_failed(&c.stats.name, &c.stats.failed, message.as_str())));
}

pub extern "C" fn log_enabled(level: u8, target: RStr<'_>) -> bool {
    catch_unwind(|| {
        log::logger().enabled(&log::Metadata::builder().level(level_from_u8(level)).target(target.as_str()).build())
    })
    .unwrap_or(false)
}

pub extern "C" fn log(r: &FfiLogRecord<'_>) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        let module_path = (!r.module_path.is_empty()).then(|| r.module_path.as_str());
        let file = (!r.file.is_empty()).then(|| r.file.as_str());
        log::logger().log(
            &log::Record::builder()
                .level(level_from_u8(r.level))
                .target(r.target.as_str())
                .args(format_args!("{}", r.message.as_str()))
                .module_path(module_path)
                .file(file)
                .line((r.line != 0).then_some(r.line))
                .build(),
        )
    }));
}

pub extern "C" fn log_flush() {
    let _ = catch_unwind(|| log::logger().flush());
}

pub extern "C" fn log_max_level() -> u8 {
    log::max_level() as usize as u8
}

/// Registers a metric of the calling plugin (ABI 1.1).
pub unsafe extern "C" fn register_metric(
    p: *const c_void,
    kind: MetricKind,
    name: RStr<'_>,
    help: RStr<'_>,
    labels: RSlice<'_, MetricLabel<'_>>,
) -> RResult<*const c_void, RString> {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    let r = catch_unwind(AssertUnwindSafe(|| {
        let labels: Vec<(&str, &str)> = labels.iter().map(|t| (t.0.as_str(), t.1.as_str())).collect();
        c.bus.plugin_metrics().register(&c.stats.name, kind, name.as_str(), help.as_str(), &labels)
    }))
    .unwrap_or_else(|_| Err("host panicked while registering a metric".into()));
    match r {
        Ok(cell) => RResult::ROk(cell),
        Err(e) => RResult::RErr(RString::from(e)),
    }
}

/// A backbone offers a direct queue as the apps' `inq` (ABI 1.2).
pub unsafe extern "C" fn offer_direct_inq(p: *const c_void, queue: &Queue) -> bool {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    catch_unwind(AssertUnwindSafe(|| c.bus.offer_direct_inq(&c.stats, queue))).unwrap_or(false)
}

/// The test-only entry of the `abi-next` build: returns the host's minor.
#[cfg(feature = "abi-next")]
pub unsafe extern "C" fn next_host_entry(_: *const c_void) -> u32 {
    threatbus_plugin_api::abi::ABI_MINOR
}
