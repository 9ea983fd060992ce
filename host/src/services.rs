//! The host side of `HostServices`: the functions plugins call. None of
//! them may unwind into a plugin (a panic would abort the process), so each
//! catches panics of the host code it runs.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use threatbus_plugin_api::abi_stable::std_types::{ROption, RResult, RStr, RString};
use threatbus_plugin_api::logging::{level_from_u8, FfiLogRecord};
use threatbus_plugin_api::{Message, MessageKind, Queue};

use crate::bus::{ffi_subscribe_result, PluginCtx};

/// # Safety
/// `p` must be the `ctx` of a table made by `Bus::services_for`.
unsafe fn ctx<'a>(p: *const c_void) -> &'a PluginCtx {
    // SAFETY: the caller's promise; the context is leaked, so 'static.
    unsafe { &*(p as *const PluginCtx) }
}

pub unsafe extern "C" fn inq(p: *const c_void) -> Queue {
    // SAFETY: plugins pass back the `ctx` of their table.
    unsafe { ctx(p) }.bus.inq.clone()
}

/// Validation needs no plugin context; `ctx` is part of the signature so
/// that later versions may use it.
pub unsafe extern "C" fn parse(_ctx: *const c_void, kind: MessageKind, json: RStr<'_>) -> RResult<Message, RString> {
    let r = catch_unwind(|| crate::validate::parse(kind, json.as_str()))
        .unwrap_or_else(|_| Err("the host's validator panicked on this input".to_string()));
    match r {
        Ok(m) => RResult::ROk(m),
        Err(e) => RResult::RErr(RString::from(e)),
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
    let r =
        catch_unwind(AssertUnwindSafe(|| c.bus.subscribe(topic.as_str(), queue, Duration::from_secs(snapshot_secs))))
            .unwrap_or_else(|_| Err("host panicked while subscribing".into()));
    ffi_subscribe_result(r)
}

pub unsafe extern "C" fn unsubscribe(p: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), RString> {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    let r = catch_unwind(AssertUnwindSafe(|| c.bus.unsubscribe(topic.as_str(), queue)))
        .unwrap_or_else(|_| Err("host panicked while unsubscribing".into()));
    match r {
        Ok(()) => RResult::ROk(()),
        Err(e) => RResult::RErr(RString::from(e)),
    }
}

pub unsafe extern "C" fn report_failure(p: *const c_void, message: RStr<'_>) {
    // SAFETY: plugins pass back the `ctx` of their table.
    let c = unsafe { ctx(p) };
    let _ = catch_unwind(AssertUnwindSafe(|| crate::bus::mark_failed(&c.name, &c.failed, message.as_str())));
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

/// The test-only entry of the `abi-next` build: returns the host's minor.
#[cfg(feature = "abi-next")]
pub unsafe extern "C" fn next_host_entry(_: *const c_void) -> u32 {
    threatbus_plugin_api::abi::ABI_MINOR
}
