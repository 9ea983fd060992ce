//! What the bus counts and how it is exposed: the host's own counts of
//! every plugin's traffic, the counters and gauges plugins register through
//! `register_metric` (ABI 1.1), the Prometheus text exposition built from
//! both with `prometheus-client`, and the periodic stats line.
//!
//! Counting never takes a lock on the message path: every count is an
//! atomic in memory that only the scrape (or the stats line) reads.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use threatbus_plugin_api::abi::{MetricKind, PluginKind, ABI_MAJOR, ABI_MINOR};
use threatbus_plugin_api::queue::COUNTED_KINDS;
use threatbus_plugin_api::{MessageKind, SendCounts};

use crate::bus::Bus;
use crate::validate::REJECTION_REASONS;

/// The topic label of a message kind's slot (slot 0: the kind was unknown).
fn topic_of_slot(slot: usize) -> &'static str {
    match slot {
        0 => "unknown",
        s => MessageKind(s as u32).topic(),
    }
}

/// The message kinds that have a topic, by slot.
const KIND_SLOTS: std::ops::Range<usize> = 1..5;

/// The host's counts for one plugin.
pub struct PluginStats {
    pub name: String,
    pub kind: PluginKind,
    pub version: String,
    pub api_version: String,
    pub abi: (u32, u32),
    /// Messages the plugin handed to the validator, by kind slot.
    received: [AtomicU64; COUNTED_KINDS],
    /// Messages the validator refused, by [`REJECTION_REASONS`] index.
    invalid: [AtomicU64; REJECTION_REASONS.len()],
    /// What the plugin put into `inq` (its handle counts).
    pub accepted: Arc<SendCounts>,
    /// What backbones and the core put into the plugin's subscriber queues.
    pub delivered: Arc<SendCounts>,
    pub snapshot_requests: AtomicU64,
    /// The plugin's failure flag: set, the host no longer calls it.
    pub failed: AtomicBool,
    pub stopped: AtomicBool,
}

impl PluginStats {
    pub fn new(decl: &crate::loader::Declaration) -> Arc<PluginStats> {
        Arc::new(PluginStats {
            name: decl.name.clone(),
            kind: decl.kind,
            version: decl.plugin_version.clone(),
            api_version: decl.api_version.clone(),
            abi: (decl.abi_major, decl.abi_minor),
            received: Default::default(),
            invalid: Default::default(),
            accepted: SendCounts::new(),
            delivered: SendCounts::new(),
            snapshot_requests: AtomicU64::new(0),
            failed: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        })
    }

    /// Counts a message handed to the validator (`kind` 0: not known).
    pub fn count_received(&self, kind: MessageKind) {
        self.received[(kind.0 as usize).min(COUNTED_KINDS - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a refusal of the validator.
    pub fn count_invalid(&self, reason_index: usize) {
        self.invalid[reason_index.min(REJECTION_REASONS.len() - 1)].fetch_add(1, Ordering::Relaxed);
    }

    /// A plugin that stopped is `stopped`, even if it failed before: the
    /// host sets the failure flag of every plugin it destroys, so that
    /// nothing calls it again, which is no failure.
    fn state(&self) -> &'static str {
        if self.stopped.load(Ordering::Relaxed) {
            "stopped"
        } else if self.failed.load(Ordering::Relaxed) {
            "failed"
        } else {
            "running"
        }
    }

    fn received_total(&self) -> u64 {
        self.received.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn invalid_total(&self) -> u64 {
        self.invalid.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Counts of the snapshot protocol in the core.
#[derive(Default)]
pub struct SnapshotStats {
    pub envelopes_delivered: AtomicU64,
    pub envelopes_undelivered: AtomicU64,
    pub envelopes_unknown_id: AtomicU64,
    pub envelopes_invalid: AtomicU64,
    pub ids_expired: AtomicU64,
    pub ids_over_limit: AtomicU64,
}

// ---------------------------------------------------------------------------
// Metrics registered by plugins (ABI 1.1)
// ---------------------------------------------------------------------------

/// Most series one plugin may register.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;
const MAX_NAME_LEN: usize = 64;
const MAX_HELP_LEN: usize = 200;
const MAX_LABELS: usize = 4;
const MAX_LABEL_VALUE_LEN: usize = 128;

#[derive(Clone, Copy)]
enum Cell {
    Counter(&'static AtomicU64),
    Gauge(&'static AtomicI64),
}

struct Series {
    plugin: String,
    label_values: Vec<String>,
    cell: Cell,
}

struct Family {
    /// Full name, `threatbus_<name>`.
    name: String,
    help: String,
    kind: MetricKind,
    label_names: Vec<String>,
    series: Vec<Series>,
}

/// The metrics plugins registered, in registration order.
#[derive(Default)]
pub struct PluginMetrics {
    families: Mutex<Vec<Family>>,
    series_per_plugin: Mutex<HashMap<String, usize>>,
}

fn is_metric_word(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

impl PluginMetrics {
    /// Registers (or finds) a series of `plugin` and returns its value's
    /// address; the error names the broken rule.
    pub fn register(
        &self,
        plugin: &str,
        kind: MetricKind,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
    ) -> Result<*const std::ffi::c_void, String> {
        let prefix = format!("{}_", plugin.replace('-', "_"));
        if !is_metric_word(name) || name.len() > MAX_NAME_LEN {
            return Err(format!("name '{name}' must match [a-z][a-z0-9_]* and be at most {MAX_NAME_LEN} bytes"));
        }
        if !name.starts_with(&prefix) {
            return Err(format!("name '{name}' must start with the plugin's name, '{prefix}'"));
        }
        if kind == MetricKind::COUNTER && name.ends_with("_total") {
            return Err(format!("counter '{name}' must not end in _total (the exposition adds it)"));
        }
        if kind != MetricKind::COUNTER && kind != MetricKind::GAUGE {
            return Err(format!("unknown metric kind {}", kind.0));
        }
        if help.is_empty() || help.len() > MAX_HELP_LEN || help.contains(['\n', '\r']) {
            return Err(format!("the help of '{name}' must be one line of 1 to {MAX_HELP_LEN} bytes"));
        }
        if labels.len() > MAX_LABELS {
            return Err(format!("'{name}' has {} labels; at most {MAX_LABELS}", labels.len()));
        }
        for (k, v) in labels {
            if !is_metric_word(k) || *k == "plugin" {
                return Err(format!("label name '{k}' of '{name}' must match [a-z][a-z0-9_]* and not be 'plugin'"));
            }
            if v.len() > MAX_LABEL_VALUE_LEN {
                return Err(format!("a value of label '{k}' of '{name}' is longer than {MAX_LABEL_VALUE_LEN} bytes"));
            }
        }
        let full = format!("threatbus_{name}");
        let label_names: Vec<String> = labels.iter().map(|(k, _)| k.to_string()).collect();
        let label_values: Vec<String> = labels.iter().map(|(_, v)| v.to_string()).collect();
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = match families.iter_mut().position(|f| f.name == full) {
            Some(i) => {
                let f = &mut families[i];
                if f.kind != kind || f.label_names != label_names {
                    return Err(format!("'{name}' was registered before with another kind or other label names"));
                }
                if let Some(s) = f.series.iter().find(|s| s.plugin == plugin && s.label_values == label_values) {
                    return Ok(match s.cell {
                        Cell::Counter(c) => c as *const AtomicU64 as *const std::ffi::c_void,
                        Cell::Gauge(g) => g as *const AtomicI64 as *const std::ffi::c_void,
                    });
                }
                f
            }
            None => {
                families.push(Family { name: full, help: help.to_string(), kind, label_names, series: Vec::new() });
                families.last_mut().expect("just pushed")
            }
        };
        let mut per_plugin = self.series_per_plugin.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_plugin.entry(plugin.to_string()).or_insert(0);
        if *count >= MAX_SERIES_PER_PLUGIN {
            return Err(format!("plugin '{plugin}' registered {MAX_SERIES_PER_PLUGIN} series already"));
        }
        *count += 1;
        let (cell, ptr) = if kind == MetricKind::COUNTER {
            let c: &'static AtomicU64 = Box::leak(Box::new(AtomicU64::new(0)));
            (Cell::Counter(c), c as *const AtomicU64 as *const std::ffi::c_void)
        } else {
            let g: &'static AtomicI64 = Box::leak(Box::new(AtomicI64::new(0)));
            (Cell::Gauge(g), g as *const AtomicI64 as *const std::ffi::c_void)
        };
        family.series.push(Series { plugin: plugin.to_string(), label_values, cell });
        Ok(ptr)
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        for f in families.iter().filter(|f| !f.series.is_empty()) {
            let ty = if f.kind == MetricKind::COUNTER { MetricType::Counter } else { MetricType::Gauge };
            let mut m = encoder.encode_descriptor(&f.name, &f.help, None, ty)?;
            for s in &f.series {
                let mut labels: Vec<(&str, &str)> = vec![("plugin", s.plugin.as_str())];
                labels.extend(f.label_names.iter().map(String::as_str).zip(s.label_values.iter().map(String::as_str)));
                let e = m.encode_family(&labels)?;
                match s.cell {
                    Cell::Counter(c) => ConstCounter::new(c.load(Ordering::Relaxed)).encode(e)?,
                    Cell::Gauge(g) => ConstGauge::new(g.load(Ordering::Relaxed)).encode(e)?,
                }
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Exposition
// ---------------------------------------------------------------------------

/// Reads the bus's state on every scrape.
struct BusCollector {
    bus: Arc<Bus>,
}

impl std::fmt::Debug for BusCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BusCollector")
    }
}

/// Writes one family of samples of metric type `ty`, each made by `make`.
fn family<'a, V, M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, ty): (&str, &str, MetricType),
    make: fn(V) -> M,
    rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, V)>,
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, ty)?;
    for (labels, v) in rows {
        make(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

/// Writes one family of counters.
fn counters<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, u64)>,
) -> Result<(), std::fmt::Error> {
    family(encoder, (name, help, MetricType::Counter), ConstCounter::new, rows)
}

/// Writes one family of gauges.
fn gauges<'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Vec<(&'a str, &'a str)>, i64)>,
) -> Result<(), std::fmt::Error> {
    family(encoder, (name, help, MetricType::Gauge), ConstGauge::new, rows)
}

impl Collector for BusCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bus = &self.bus;
        let stats = bus.plugin_stats();
        let abi = format!("{ABI_MAJOR}.{ABI_MINOR}");
        {
            let mut m = encoder.encode_descriptor(
                "threatbus_build",
                "Version of the threatbus host",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&vec![("version", env!("CARGO_PKG_VERSION")), ("abi", abi.as_str())])?;
        }
        let plugin_abis: Vec<String> = stats.iter().map(|p| format!("{}.{}", p.abi.0, p.abi.1)).collect();
        {
            let mut m = encoder.encode_descriptor(
                "threatbus_plugin",
                "Loaded plugins: kind, version, SDK version and ABI",
                None,
                MetricType::Info,
            )?;
            for (p, abi) in stats.iter().zip(&plugin_abis) {
                m.encode_info(&vec![
                    ("plugin", p.name.as_str()),
                    ("kind", p.kind.as_str().unwrap_or("unknown")),
                    ("version", p.version.as_str()),
                    ("api_version", p.api_version.as_str()),
                    ("abi", abi.as_str()),
                ])?;
            }
        }
        gauges(
            &mut encoder,
            "threatbus_plugin_state",
            "1 for the state each plugin is in (running, failed, stopped)",
            stats.iter().flat_map(|p| {
                let now = p.state();
                ["running", "failed", "stopped"]
                    .into_iter()
                    .map(move |s| (vec![("plugin", p.name.as_str()), ("state", s)], (s == now) as i64))
            }),
        )?;
        let per_kind = |f: fn(&PluginStats, usize) -> u64| {
            stats
                .iter()
                .flat_map(move |p| {
                    KIND_SLOTS.map(move |slot| {
                        (vec![("plugin", p.name.as_str()), ("topic", topic_of_slot(slot))], f(p, slot))
                    })
                })
                .filter(|(_, v)| *v > 0)
                .collect::<Vec<_>>()
        };
        let mut received = per_kind(|p, slot| p.received[slot].load(Ordering::Relaxed));
        received.extend(
            stats
                .iter()
                .map(|p| {
                    (vec![("plugin", p.name.as_str()), ("topic", "unknown")], p.received[0].load(Ordering::Relaxed))
                })
                .filter(|(_, v)| *v > 0),
        );
        counters(
            &mut encoder,
            "threatbus_messages_received",
            "Messages each plugin handed to the host's validator, by topic (unknown: no valid type)",
            received,
        )?;
        counters(
            &mut encoder,
            "threatbus_messages_invalid",
            "Messages the validator refused, by plugin and reason",
            stats.iter().flat_map(|p| {
                REJECTION_REASONS.iter().enumerate().filter_map(move |(i, r)| {
                    let v = p.invalid[i].load(Ordering::Relaxed);
                    (v > 0).then(|| (vec![("plugin", p.name.as_str()), ("reason", *r)], v))
                })
            }),
        )?;
        counters(
            &mut encoder,
            "threatbus_messages_accepted",
            "Messages each plugin put into the inbound queue, by topic",
            per_kind(|p, slot| p.accepted.sent(MessageKind(slot as u32))),
        )?;
        counters(
            &mut encoder,
            "threatbus_messages_refused",
            "Valid messages the inbound queue did not take (closed at shutdown, or full until the sender gave up)",
            per_kind(|p, slot| p.accepted.refused(MessageKind(slot as u32))),
        )?;
        counters(
            &mut encoder,
            "threatbus_messages_delivered",
            "Messages put into each plugin's subscriber queues, by topic",
            per_kind(|p, slot| p.delivered.sent(MessageKind(slot as u32))),
        )?;
        let mut dropped: Vec<(Vec<(&str, &str)>, u64)> = Vec::new();
        for p in &stats {
            for slot in KIND_SLOTS {
                let k = MessageKind(slot as u32);
                for (reason, v) in [("queue_full", p.delivered.dropped(k)), ("queue_closed", p.delivered.refused(k))] {
                    if v > 0 {
                        dropped.push((
                            vec![("plugin", p.name.as_str()), ("topic", topic_of_slot(slot)), ("reason", reason)],
                            v,
                        ));
                    }
                }
            }
        }
        counters(
            &mut encoder,
            "threatbus_messages_dropped",
            "Messages not delivered to a plugin's subscriber queue: full (queue_full) or closed (queue_closed)",
            dropped,
        )?;
        let subs = bus.subscription_summary();
        gauges(
            &mut encoder,
            "threatbus_subscriptions",
            "Subscriber queues of each plugin, by subscribed topic",
            subscription_series(&subs.by_topic)
                .into_iter()
                .map(|(p, t, n)| (vec![("plugin", p), ("topic", t)], n as i64)),
        )?;
        gauges(
            &mut encoder,
            "threatbus_queued_messages",
            "Messages waiting in each plugin's subscriber queues",
            stats
                .iter()
                .map(|p| (vec![("plugin", p.name.as_str())], subs.queued.get(&p.name).copied().unwrap_or(0) as i64)),
        )?;
        gauges(
            &mut encoder,
            "threatbus_inq_messages",
            "Messages waiting in the inbound queue",
            [(vec![], bus.inq.len() as i64)],
        )?;
        counters(
            &mut encoder,
            "threatbus_snapshot_requests",
            "Snapshot requests made for each plugin's subscriptions",
            stats.iter().map(|p| (vec![("plugin", p.name.as_str())], p.snapshot_requests.load(Ordering::Relaxed))),
        )?;
        let s = bus.snapshot_stats();
        counters(
            &mut encoder,
            "threatbus_snapshot_envelopes",
            "Snapshot envelopes the core handled, by result",
            [
                ("delivered", &s.envelopes_delivered),
                ("undelivered", &s.envelopes_undelivered),
                ("unknown_id", &s.envelopes_unknown_id),
                ("invalid", &s.envelopes_invalid),
            ]
            .map(|(r, c)| (vec![("result", r)], c.load(Ordering::Relaxed))),
        )?;
        counters(
            &mut encoder,
            "threatbus_snapshot_ids_forgotten",
            "Snapshot ids forgotten before their requester unsubscribed: expired (core.snapshot_ttl) or over_limit (core.snapshot_max)",
            [("expired", &s.ids_expired), ("over_limit", &s.ids_over_limit)]
                .map(|(r, c)| (vec![("reason", r)], c.load(Ordering::Relaxed))),
        )?;
        bus.plugin_metrics().encode(&mut encoder)
    }
}

/// The registry behind `/metrics`.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(bus: Arc<Bus>) -> Exposition {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BusCollector { bus }));
        Exposition { registry }
    }

    /// The Prometheus text format (0.0.4) of every metric now.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Content type of [`Exposition::render`].
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

// ---------------------------------------------------------------------------
// The stats line
// ---------------------------------------------------------------------------

/// Totals over all plugins, for the stats line.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct Totals {
    pub received: u64,
    pub invalid: u64,
    pub accepted: u64,
    pub delivered: u64,
    pub dropped: u64,
}

impl Totals {
    pub fn of(stats: &[Arc<PluginStats>]) -> Totals {
        let mut t = Totals::default();
        for p in stats {
            t.received += p.received_total();
            t.invalid += p.invalid_total();
            for slot in 0..COUNTED_KINDS {
                let k = MessageKind(slot as u32);
                t.accepted += p.accepted.sent(k);
                t.delivered += p.delivered.sent(k);
                t.dropped += p.delivered.dropped(k) + p.delivered.refused(k) + p.accepted.refused(k);
            }
        }
        t
    }
}

/// Most `topic` values of `threatbus_subscriptions` per plugin. Topics are
/// chosen by clients, so their number is bounded here rather than by the
/// plugins' subscription limits.
pub const MAX_TOPIC_SERIES: usize = 100;

/// The `topic` value under which a plugin's subscriptions beyond its
/// [`MAX_TOPIC_SERIES`] most used topics are summed.
pub const OTHER_TOPICS: &str = "(other topics)";

/// The series of `threatbus_subscriptions`: (plugin, topic, queues), at
/// most [`MAX_TOPIC_SERIES`] topics of each plugin (those with the most
/// queues, then by name), plus one [`OTHER_TOPICS`] series for the rest.
fn subscription_series(by_topic: &BTreeMap<(String, String), usize>) -> Vec<(&str, &str, usize)> {
    let mut by_plugin: BTreeMap<&str, Vec<(&str, usize)>> = BTreeMap::new();
    for ((plugin, topic), n) in by_topic {
        by_plugin.entry(plugin).or_default().push((topic, *n));
    }
    let mut series = Vec::new();
    for (plugin, mut topics) in by_plugin {
        if topics.len() > MAX_TOPIC_SERIES {
            topics.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let rest: usize = topics[MAX_TOPIC_SERIES..].iter().map(|(_, n)| n).sum();
            topics.truncate(MAX_TOPIC_SERIES);
            topics.push((OTHER_TOPICS, rest));
        }
        series.extend(topics.into_iter().map(|(topic, n)| (plugin, topic, n)));
    }
    series
}

/// One line: totals, the change since `last`, and what waits now.
pub fn stats_line(bus: &Bus, last: &Totals, interval_secs: u64) -> (String, Totals) {
    let now = Totals::of(&bus.plugin_stats());
    let subs = bus.subscription_summary();
    let d = |a: u64, b: u64| a.saturating_sub(b);
    let line = format!(
        "stats: received {} (+{}), invalid {} (+{}), accepted {} (+{}), delivered {} (+{}), dropped {} (+{}) in the last {interval_secs} s; subscriptions {}, queued {}, inq {}",
        now.received,
        d(now.received, last.received),
        now.invalid,
        d(now.invalid, last.invalid),
        now.accepted,
        d(now.accepted, last.accepted),
        now.delivered,
        d(now.delivered, last.delivered),
        now.dropped,
        d(now.dropped, last.dropped),
        subs.by_topic.values().sum::<usize>(),
        subs.queued.values().sum::<usize>(),
        bus.inq.len(),
    );
    (line, now)
}

/// What the subscription registry holds now.
#[derive(Default)]
pub struct SubscriptionSummary {
    /// Subscribed queues by (plugin, topic).
    pub by_topic: BTreeMap<(String, String), usize>,
    /// Messages waiting in each plugin's subscriber queues.
    pub queued: HashMap<String, usize>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_topics_are_bounded_per_plugin() {
        let mut by_topic = BTreeMap::new();
        // zmq: 100 topics with 2 queues each, 50 with 1; echo: 3 topics.
        for i in 0..150 {
            by_topic.insert(("zmq".to_string(), format!("stix2/t{i:03}")), if i < 100 { 2 } else { 1 });
        }
        for i in 0..3 {
            by_topic.insert(("echo".to_string(), format!("stix2/e{i}")), 1);
        }
        let series = subscription_series(&by_topic);
        let zmq: Vec<_> = series.iter().filter(|(p, _, _)| *p == "zmq").collect();
        assert_eq!(zmq.len(), MAX_TOPIC_SERIES + 1, "100 topics and the rest");
        assert!(
            zmq.iter().filter(|(_, t, _)| *t != OTHER_TOPICS).all(|(_, _, n)| *n == 2),
            "the most used topics are kept"
        );
        assert_eq!(zmq.iter().find(|(_, t, _)| *t == OTHER_TOPICS).map(|s| s.2), Some(50), "the rest is summed");
        let total: usize = zmq.iter().map(|s| s.2).sum();
        assert_eq!(total, 250, "no queue is lost from the total");
        assert_eq!(series.iter().filter(|(p, _, _)| *p == "echo").count(), 3, "a plugin under the limit is unchanged");
    }

    #[test]
    fn plugin_metric_rules() {
        let m = PluginMetrics::default();
        let a = m.register("zmq", MetricKind::COUNTER, "zmq_sent", "Frames sent", &[]).unwrap();
        assert_eq!(a, m.register("zmq", MetricKind::COUNTER, "zmq_sent", "Frames sent", &[]).unwrap(), "same series");
        let b = m.register("zmq", MetricKind::COUNTER, "zmq_discarded", "Discarded", &[("reason", "expired")]).unwrap();
        let c = m.register("zmq", MetricKind::COUNTER, "zmq_discarded", "Discarded", &[("reason", "stop")]).unwrap();
        assert_ne!(b, c);
        for (name, labels, why) in [
            ("sent", vec![], "must start with the plugin's name"),
            ("zmq_sent_total", vec![], "must not end in _total"),
            ("zmq_Bad", vec![], "must match"),
            ("zmq_x", vec![("plugin", "v")], "not be 'plugin'"),
            ("zmq_discarded", vec![("other", "v")], "other label names"),
        ] {
            let e = m.register("zmq", MetricKind::COUNTER, name, "help", &labels).unwrap_err();
            assert!(e.contains(why), "{name}: {e}");
        }
        let e = m.register("zmq", MetricKind::GAUGE, "zmq_sent", "Frames sent", &[]).unwrap_err();
        assert!(e.contains("another kind"), "{e}");
        let e = m.register("zmq", MetricKind::COUNTER, "zmq_y", "two\nlines", &[]).unwrap_err();
        assert!(e.contains("one line"), "{e}");
        assert!(m.register("frozen-inmem", MetricKind::GAUGE, "frozen_inmem_depth", "Depth", &[]).is_ok());
    }

    #[test]
    fn series_per_plugin_are_bounded() {
        let m = PluginMetrics::default();
        for i in 0..MAX_SERIES_PER_PLUGIN {
            m.register("zmq", MetricKind::COUNTER, "zmq_n", "N", &[("i", &i.to_string())]).unwrap();
        }
        let e = m.register("zmq", MetricKind::COUNTER, "zmq_n", "N", &[("i", "x")]).unwrap_err();
        assert!(e.contains("registered 1000 series"), "{e}");
        assert!(m.register("inmem", MetricKind::COUNTER, "inmem_n", "N", &[]).is_ok(), "other plugins unaffected");
    }
}
