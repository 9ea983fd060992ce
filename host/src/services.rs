//! The host side of `HostServices`: `extern "C"` functions called by
//! plugins. None of them may unwind into a plugin.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use threatbus_plugin_api::abi_stable::std_types::{ROption, RResult, RStr, RString};
use threatbus_plugin_api::logging::{level_from_u8, FfiLogRecord};
use threatbus_plugin_api::Queue;

use crate::bus::{ffi_subscribe_result, PluginCtx};

fn ctx<'a>(p: *const c_void) -> &'a PluginCtx {
    // SAFETY: `ctx` is a leaked `PluginCtx` created by `Bus::services_for`.
    unsafe { &*(p as *const PluginCtx) }
}

pub extern "C" fn inq(p: *const c_void) -> Queue {
    ctx(p).bus.inq.clone()
}

pub extern "C" fn subscribe(
    p: *const c_void,
    topic: RStr<'_>,
    queue: &Queue,
    snapshot_secs: u64,
) -> RResult<ROption<RString>, RString> {
    let c = ctx(p);
    let r =
        catch_unwind(AssertUnwindSafe(|| c.bus.subscribe(topic.as_str(), queue, Duration::from_secs(snapshot_secs))))
            .unwrap_or_else(|_| Err("host panicked while subscribing".into()));
    ffi_subscribe_result(r)
}

pub extern "C" fn unsubscribe(p: *const c_void, topic: RStr<'_>, queue: &Queue) -> RResult<(), RString> {
    let c = ctx(p);
    let r = catch_unwind(AssertUnwindSafe(|| c.bus.unsubscribe(topic.as_str(), queue)))
        .unwrap_or_else(|_| Err("host panicked while unsubscribing".into()));
    match r {
        Ok(()) => RResult::ROk(()),
        Err(e) => RResult::RErr(RString::from(e)),
    }
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

pub extern "C" fn report_failure(p: *const c_void, message: RStr<'_>) {
    let c = ctx(p);
    let _ = catch_unwind(AssertUnwindSafe(|| crate::bus::mark_failed(&c.name, &c.failed, message.as_str())));
}
