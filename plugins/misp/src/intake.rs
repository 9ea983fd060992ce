//! What both intakes (ZeroMQ and Kafka) do with one attribute
//! notification: decode, filter, map, have the host validate, put into
//! `inq`. Bad input is logged (rate-limited, with a bounded excerpt) and
//! skipped; nothing here can stop the intake.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use threatbus_plugin_api::logging::{excerpt, LogLimiter};
use threatbus_plugin_api::{Host, MessageKind, Queue};

use crate::config::Filter;
use crate::mapping::{attribute_to_indicator, is_removal, is_whitelisted, Skip};
use threatbus_http::Stopper;

/// Counts of what the intakes did, for the stop log line and tests.
#[derive(Debug, Default)]
pub struct IntakeCounters {
    /// Indicators put into `inq`.
    pub accepted: AtomicU64,
    /// Notifications the filter rejected or that map to nothing.
    pub skipped: AtomicU64,
    /// Undecodable or unmappable notifications.
    pub invalid: AtomicU64,
}

/// One intake's handler; each intake thread owns one.
pub struct Intake {
    host: Host,
    inq: Queue,
    filters: Arc<Vec<Filter>>,
    stop: Arc<Stopper>,
    counters: Arc<IntakeCounters>,
    limiter: LogLimiter,
    source: &'static str,
}

/// Whether the intake should go on after a notification.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// The plugin is stopping.
    Stop,
}

impl Intake {
    /// A handler for notifications from `source` ("ZeroMQ", "Kafka").
    pub fn new(
        host: Host,
        filters: Arc<Vec<Filter>>,
        stop: Arc<Stopper>,
        counters: Arc<IntakeCounters>,
        source: &'static str,
    ) -> Self {
        let limiter = LogLimiter::new("invalid MISP attributes", Duration::from_secs(10), 20);
        Self { inq: host.inq(), host, filters, stop, counters, limiter, source }
    }

    fn invalid(&mut self, why: &str, body: &[u8]) {
        self.counters.invalid.fetch_add(1, Ordering::Relaxed);
        if self.limiter.allow(Instant::now()) {
            // The reason may quote input (the host's validation does): one
            // line, bounded.
            let why: String = why
                .chars()
                .take(300)
                .flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] })
                .collect();
            log::warn!("Skipping a MISP attribute from {}: {why}; message: {}", self.source, excerpt(body));
        }
    }

    /// Handles one notification (the JSON after the ZeroMQ topic, or a
    /// Kafka message value).
    pub fn handle(&mut self, body: &[u8]) -> Flow {
        let msg = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                self.invalid("not a JSON object", body);
                return Flow::Continue;
            }
            Err(e) => {
                self.invalid(&format!("invalid JSON ({e})"), body);
                return Flow::Continue;
            }
        };
        let removal = is_removal(&msg);
        if !is_whitelisted(&msg, &self.filters, removal) {
            self.counters.skipped.fetch_add(1, Ordering::Relaxed);
            log::debug!("MISP attribute not whitelisted: {}", excerpt(body));
            return Flow::Continue;
        }
        let Some(attr) = msg.get("Attribute").and_then(Value::as_object) else {
            self.invalid("no Attribute", body);
            return Flow::Continue;
        };
        let action = msg.get("action").and_then(Value::as_str).unwrap_or("");
        let json = match attribute_to_indicator(attr, action, chrono::Utc::now()) {
            Ok(json) => json,
            Err(Skip::Quiet(why)) => {
                self.counters.skipped.fetch_add(1, Ordering::Relaxed);
                log::debug!("No indicator: {why}");
                return Flow::Continue;
            }
            Err(Skip::Invalid(why)) => {
                self.invalid(&why, body);
                return Flow::Continue;
            }
        };
        let msg = match self.host.parse(MessageKind::INDICATOR, &json) {
            Ok(m) => m,
            Err(why) => {
                self.invalid(&format!("the indicator is not valid STIX ({why})"), body);
                return Flow::Continue;
            }
        };
        log::debug!("MISP attribute to the bus: {}", msg.json());
        match self.inq.send_or_stop(msg, self.stop.flag()) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                Flow::Continue
            }
            Err(_) => Flow::Stop,
        }
    }
}
