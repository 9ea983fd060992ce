//! Logging bridge: `log` records emitted inside a plugin reach the host's
//! logger with target `threatbus::plugin::<name>`.
//!
//! Every cdylib has its own copy of the `log` crate. The export macro installs
//! a forwarding logger into the plugin's copy before any plugin code runs, so
//! plugins simply use `log::info!` and friends. Plugins must not install a
//! logger of their own (`env_logger::init()` would fail).

use std::time::{Duration, Instant};

use abi_stable::{std_types::RStr, StableAbi};

use crate::Host;

/// One log record as it crosses the boundary. The message is formatted in
/// the plugin.
#[repr(C)]
#[derive(StableAbi)]
pub struct FfiLogRecord<'a> {
    /// 1 = error, 2 = warn, 3 = info, 4 = debug, 5 = trace.
    pub level: u8,
    /// Log target, e.g. `threatbus::plugin::zmq`.
    pub target: RStr<'a>,
    /// Formatted message.
    pub message: RStr<'a>,
    /// Module path of the call site (may be empty).
    pub module_path: RStr<'a>,
    /// Source file of the call site (may be empty).
    pub file: RStr<'a>,
    /// Source line of the call site (0 if unknown).
    pub line: u32,
}

/// At most 200 characters of a (possibly binary) message body, on one line
/// (control characters escaped, `…` when cut): for log lines about input
/// that was rejected.
pub fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(body);
    let mut out: String = s.chars().take(200).collect();
    if s.chars().nth(200).is_some() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// Limits how often bad input is logged, so that a broken peer cannot flood
/// the log: at most `burst` lines per `window`, then, when the window ends,
/// one line saying how many occurrences went unlogged.
pub struct LogLimiter {
    what: &'static str,
    window: Duration,
    burst: u32,
    start: Instant,
    count: u32,
    suppressed: u64,
}

impl LogLimiter {
    /// A limiter for occurrences of `what` (e.g. "invalid messages from
    /// apps"), which names them in the summary line.
    pub fn new(what: &'static str, window: Duration, burst: u32) -> Self {
        Self { what, window, burst, start: Instant::now(), count: 0, suppressed: 0 }
    }

    /// Whether to log this occurrence.
    pub fn allow(&mut self, now: Instant) -> bool {
        if now.duration_since(self.start) >= self.window {
            if self.suppressed > 0 {
                log::warn!("{} more {} were dropped without a log line", self.suppressed, self.what);
            }
            self.start = now;
            self.count = 0;
            self.suppressed = 0;
        }
        if self.count < self.burst {
            self.count += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Logs what a drop-newest [`Queue`](crate::Queue) dropped because its
/// consumer did not keep up: while it keeps dropping, at most one line per
/// `interval`; at the end, the total.
pub struct DropReporter {
    what: &'static str,
    why: &'static str,
    interval: Duration,
    logged: u64,
    last: Instant,
}

impl DropReporter {
    /// A reporter for drops of `what` (e.g. "sightings") because `why`
    /// (e.g. "MISP did not keep up").
    pub fn new(what: &'static str, why: &'static str) -> Self {
        Self { what, why, interval: Duration::from_secs(10), logged: 0, last: Instant::now() }
    }

    /// Logs the drops of `queue` so far, if there are new ones and the last
    /// line is at least an interval old. Call it as messages are taken.
    pub fn check(&mut self, queue: &crate::Queue) {
        let dropped = queue.dropped();
        if dropped > self.logged && self.last.elapsed() >= self.interval {
            log::warn!("{dropped} {} were dropped so far because {}", self.what, self.why);
            self.logged = dropped;
            self.last = Instant::now();
        }
    }

    /// Logs the total and what is still waiting, when the consumer ends.
    pub fn finish(self, queue: &crate::Queue, reason: &str) {
        let left = queue.len();
        if left > 0 {
            log::warn!("{left} {} were left unprocessed because {reason}", self.what);
        }
        if queue.dropped() > 0 {
            log::warn!("{} {} were dropped in all because {}", queue.dropped(), self.what, self.why);
        }
    }
}

/// Converts a log level to its wire value.
pub fn level_to_u8(level: log::Level) -> u8 {
    level as usize as u8
}

/// Converts a wire value back to a log level (unknown values map to trace).
pub fn level_from_u8(v: u8) -> log::Level {
    match v {
        1 => log::Level::Error,
        2 => log::Level::Warn,
        3 => log::Level::Info,
        4 => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

/// Converts a wire value to a level filter (0 = off).
pub fn level_filter_from_u8(v: u8) -> log::LevelFilter {
    match v {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        4 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// The log target prefix for a plugin: `threatbus::plugin::<name>`.
pub fn plugin_target(name: &str) -> String {
    format!("threatbus::plugin::{name}")
}

struct ForwardLogger {
    host: Host,
    target: String,
}

impl ForwardLogger {
    fn target_for(&self, record_target: &str, module_path: Option<&str>) -> std::borrow::Cow<'_, str> {
        if Some(record_target) == module_path || record_target.is_empty() {
            std::borrow::Cow::Borrowed(self.target.as_str())
        } else if record_target.starts_with("threatbus::plugin::") {
            std::borrow::Cow::Owned(record_target.to_string())
        } else {
            std::borrow::Cow::Owned(format!("{}::{}", self.target, record_target))
        }
    }
}

impl log::Log for ForwardLogger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        let target = self.target_for(metadata.target(), None);
        (self.host.services().log_enabled)(level_to_u8(metadata.level()), RStr::from_str(&target))
    }

    fn log(&self, record: &log::Record<'_>) {
        let target = self.target_for(record.target(), record.module_path());
        let level = level_to_u8(record.level());
        if !(self.host.services().log_enabled)(level, RStr::from_str(&target)) {
            return;
        }
        let message = record.args().to_string();
        let rec = FfiLogRecord {
            level,
            target: RStr::from_str(&target),
            message: RStr::from_str(&message),
            module_path: RStr::from_str(record.module_path().unwrap_or("")),
            file: RStr::from_str(record.file().unwrap_or("")),
            line: record.line().unwrap_or(0),
        };
        (self.host.services().log)(&rec);
    }

    fn flush(&self) {
        (self.host.services().log_flush)()
    }
}

/// Installs the forwarding logger into this library's copy of `log`.
/// Called by the export macro; harmless if called twice.
pub fn install_forwarding_logger(host: Host, plugin_name: &str) {
    let logger = ForwardLogger { host, target: plugin_target(plugin_name) };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level_filter_from_u8((host.services().log_max_level)()));
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{excerpt, LogLimiter};

    #[test]
    fn limiter_bounds_log_lines_per_window() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new("tests", Duration::from_secs(10), 3);
        l.start = t0;
        let allowed = (0..10).filter(|_| l.allow(t0)).count();
        assert_eq!(allowed, 3);
        assert_eq!(l.suppressed, 7);
        assert!(l.allow(t0 + Duration::from_secs(11)));
        assert_eq!(l.suppressed, 0);
    }

    #[test]
    fn excerpt_is_short_and_single_line() {
        assert_eq!(excerpt(b"a\nb"), "a\\nb");
        let long = vec![b'x'; 500];
        assert_eq!(excerpt(&long).chars().count(), 201);
        assert_eq!(excerpt(&[b'x'; 200]).chars().count(), 200);
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}
