//! The bus core: starts plugins, forwards subscriptions to backbones, runs
//! the snapshot protocol, and stops everything in order.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use threatbus_plugin_api::abi::{
    HostServices, PluginDestroyFn, PluginKind, PluginSnapshotFn, PluginStopFn, PluginSubscribeFn, PluginVTable,
    PLUGIN_VTABLE_APPENDED, PLUGIN_VTABLE_V1_0_SIZE,
};
use threatbus_plugin_api::abi_stable::std_types::{ROption, RResult, RStr, RString};
use threatbus_plugin_api::queue::Overflow;
use threatbus_plugin_api::{Message, MessageKind, PluginError, Queue, SendError};
use threatbus_stix::{MessageType, SnapshotEnvelope, SnapshotRequest, TOPIC_SNAPSHOT_ENVELOPE, TOPIC_SNAPSHOT_REQUEST};

use crate::loader::CheckedPlugin;
use crate::metrics::{PluginMetrics, PluginStats, SnapshotStats, SubscriptionSummary};
use crate::services;

/// The entries of a plugin's table, copied out of it once at start.
#[derive(Clone, Copy)]
struct PluginFns {
    subscribe: PluginSubscribeFn,
    unsubscribe: PluginSubscribeFn,
    snapshot: PluginSnapshotFn,
    stop: PluginStopFn,
    destroy: PluginDestroyFn,
}

impl PluginFns {
    /// Reads the table a plugin returned.
    ///
    /// # Safety
    /// `table` must be the `vtable` of a `PluginInstance` the plugin's entry
    /// function returned.
    unsafe fn read(name: &str, table: *const c_void) -> Result<Self, String> {
        if table.is_null() {
            return Err(format!("plugin '{name}' returned no function table"));
        }
        // SAFETY: every plugin table starts with its size.
        let size = unsafe { (*table.cast::<PluginVTable>()).size };
        if size < PLUGIN_VTABLE_V1_0_SIZE {
            return Err(format!("plugin '{name}' returned a function table of {size} bytes, less than ABI 1.0's"));
        }
        for e in PLUGIN_VTABLE_APPENDED {
            if e.offset >= size {
                log::info!(
                    "plugin '{name}' predates ABI 1.{}: its table has no '{}' entry (absent, not called)",
                    e.since_minor,
                    e.name
                );
            }
        }
        let t = table.cast::<PluginVTable>();
        // SAFETY: the 1.0 entries lie within the plugin's `size` bytes
        // (checked above) and the table lives for the process. Each entry is
        // read on its own: the plugin's table may be shorter than this
        // build's `PluginVTable`, so no reference to the whole is made.
        Ok(unsafe {
            Self {
                subscribe: (*t).subscribe,
                unsubscribe: (*t).unsubscribe,
                snapshot: (*t).snapshot,
                stop: (*t).stop,
                destroy: (*t).destroy,
            }
        })
    }
}

/// A started plugin.
pub struct RunningPlugin {
    pub name: String,
    state: *const c_void,
    fns: PluginFns,
    /// Apps: queue of snapshot requests served by a worker thread.
    snapshot_tx: Mutex<Option<crossbeam_channel::Sender<Message>>>,
    stats: Arc<PluginStats>,
}

// SAFETY: plugin state is `Send + Sync` (the export macro requires it of
// the plugin's type) and its entries are thread-safe by contract.
unsafe impl Send for RunningPlugin {}
// SAFETY: see `Send`.
unsafe impl Sync for RunningPlugin {}

impl RunningPlugin {
    pub fn is_failed(&self) -> bool {
        self.stats.failed.load(Ordering::SeqCst)
    }

    /// Marks the plugin as failed; returns whether it was healthy before.
    pub fn mark_failed(&self, why: &str) -> bool {
        mark_failed(&self.name, &self.stats.failed, why)
    }

    /// Runs a plugin call (each entry catches the plugin's panics and
    /// returns them as errors); a panic marks the plugin failed.
    fn call(
        &self,
        what: &str,
        f: impl FnOnce(*const c_void, &PluginFns) -> RResult<(), PluginError>,
    ) -> Result<(), PluginError> {
        if self.is_failed() {
            return Err(PluginError::new(format!("plugin '{}' has failed", self.name)));
        }
        match f(self.state, &self.fns) {
            RResult::ROk(()) => Ok(()),
            RResult::RErr(e) => {
                if e.is_panic() {
                    self.mark_failed(&format!("{what} {e}"));
                }
                Err(e)
            }
        }
    }
}

/// Sets a plugin's failure flag; logs the first failure. Returns whether
/// the plugin was healthy before.
pub fn mark_failed(name: &str, flag: &AtomicBool, why: &str) -> bool {
    let was = !flag.swap(true, Ordering::SeqCst);
    if was {
        log::error!("plugin '{name}' failed and is no longer called: {why}");
        let _ = failures().0.try_send(());
    }
    was
}

/// Wakes the main thread when a plugin fails, so that it can tell whether
/// any backbone is left.
pub fn failures() -> &'static (crossbeam_channel::Sender<()>, crossbeam_channel::Receiver<()>) {
    static CHANNEL: std::sync::OnceLock<(crossbeam_channel::Sender<()>, crossbeam_channel::Receiver<()>)> =
        std::sync::OnceLock::new();
    CHANNEL.get_or_init(|| crossbeam_channel::bounded(64))
}

/// One outstanding snapshot: where its results go.
struct SnapshotTarget {
    queue: Queue,
    created: Instant,
}

/// Snapshot ids and their requesters; bounded in size and age.
struct Snapshots {
    by_id: HashMap<String, SnapshotTarget>,
    order: VecDeque<String>,
    ttl: Duration,
    max: usize,
    stats: Arc<SnapshotStats>,
}

impl Snapshots {
    fn insert(&mut self, id: String, queue: Queue) {
        self.expire();
        while self.by_id.len() >= self.max {
            match self.order.pop_front() {
                Some(old) => {
                    if self.by_id.remove(&old).is_some() {
                        self.stats.ids_over_limit.fetch_add(1, Ordering::Relaxed);
                        log::warn!("forgetting snapshot {old}: more than {} snapshots outstanding", self.max);
                    }
                }
                None => break,
            }
        }
        self.order.push_back(id.clone());
        self.by_id.insert(id, SnapshotTarget { queue, created: Instant::now() });
    }

    fn expire(&mut self) {
        while let Some(front) = self.order.front() {
            match self.by_id.get(front) {
                Some(t) if t.created.elapsed() < self.ttl => break,
                _ => {
                    let id = self.order.pop_front().expect("front exists");
                    if self.by_id.remove(&id).is_some() {
                        self.stats.ids_expired.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    fn get(&mut self, id: &str) -> Option<Queue> {
        self.expire();
        self.by_id.get(id).map(|t| t.queue.clone())
    }

    fn forget_queue(&mut self, q: &Queue) {
        self.by_id.retain(|_, t| &t.queue != q);
    }
}

/// Host context handed to one plugin through `HostServices::ctx`.
pub struct PluginCtx {
    pub bus: Arc<Bus>,
    /// The plugin's name and counts; its failure flag, shared with its
    /// `RunningPlugin` so that failures reported while the plugin is still
    /// starting are not lost.
    pub stats: Arc<PluginStats>,
    /// The plugin's handle to `inq`, counting what it puts there.
    pub inq: Queue,
}

/// A subscriber queue as the backbones see it: one counting handle per
/// (plugin, queue), whatever topics it is subscribed to, so that a
/// backbone still sees one queue (and delivers once) for overlapping
/// topics.
struct Tapped {
    tap: Queue,
    topics: Vec<String>,
}

/// The bus core.
pub struct Bus {
    pub inq: Queue,
    backbones: RwLock<Vec<Arc<RunningPlugin>>>,
    apps: RwLock<Vec<Arc<RunningPlugin>>>,
    snapshots: Mutex<Snapshots>,
    snapshot_q: Queue,
    threads: Mutex<Vec<JoinHandle<()>>>,
    stop_timeout: Duration,
    taps: Mutex<HashMap<(String, usize), Tapped>>,
    snapshot_stats: Arc<SnapshotStats>,
    plugin_metrics: PluginMetrics,
    /// Direct queues offered by backbones (ABI 1.2), by backbone name.
    direct_offers: Mutex<Vec<(String, Queue)>>,
    /// What apps send into: `inq`, or the one backbone's direct queue.
    app_inq: std::sync::OnceLock<Queue>,
}

impl Bus {
    pub fn new(cfg: &crate::config::Core) -> Arc<Bus> {
        let snapshot_stats = Arc::new(SnapshotStats::default());
        Arc::new(Bus {
            inq: Queue::bounded(cfg.inq_size, Overflow::BLOCK),
            backbones: RwLock::new(Vec::new()),
            apps: RwLock::new(Vec::new()),
            snapshots: Mutex::new(Snapshots {
                by_id: HashMap::new(),
                order: VecDeque::new(),
                ttl: Duration::from_secs(cfg.snapshot_ttl.max(1)),
                max: cfg.snapshot_max.max(1),
                stats: snapshot_stats.clone(),
            }),
            snapshot_q: Queue::bounded(10_000, Overflow::BLOCK),
            threads: Mutex::new(Vec::new()),
            stop_timeout: Duration::from_secs_f64(cfg.stop_timeout.max(0.1)),
            taps: Mutex::new(HashMap::new()),
            snapshot_stats,
            plugin_metrics: PluginMetrics::default(),
            direct_offers: Mutex::new(Vec::new()),
            app_inq: std::sync::OnceLock::new(),
        })
    }

    /// The host's counts of every started plugin, backbones first.
    pub fn plugin_stats(&self) -> Vec<Arc<PluginStats>> {
        [&self.backbones, &self.apps]
            .iter()
            .flat_map(|list| {
                list.read().unwrap_or_else(|e| e.into_inner()).iter().map(|p| p.stats.clone()).collect::<Vec<_>>()
            })
            .collect()
    }

    /// The metrics plugins registered.
    pub fn plugin_metrics(&self) -> &PluginMetrics {
        &self.plugin_metrics
    }

    /// The core's snapshot counts.
    pub fn snapshot_stats(&self) -> &SnapshotStats {
        &self.snapshot_stats
    }

    /// The counting handle that stands for `queue` of `plugin` with the
    /// backbones, made on its first subscription.
    pub fn tap(&self, stats: &PluginStats, queue: &Queue, topic: &str) -> Queue {
        let mut taps = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        let entry = taps
            .entry((stats.name.clone(), queue.id()))
            .or_insert_with(|| Tapped { tap: queue.counting(stats.delivered.clone()), topics: Vec::new() });
        entry.topics.push(topic.to_string());
        entry.tap.clone()
    }

    /// The handle of `queue` of `plugin` subscribed to `topic`, forgetting
    /// that subscription (and the handle with the last one); `None` if
    /// there is no such subscription.
    pub fn untap(&self, plugin: &str, queue: &Queue, topic: &str) -> Option<Queue> {
        let mut taps = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        let key = (plugin.to_string(), queue.id());
        let entry = taps.get_mut(&key)?;
        let i = entry.topics.iter().position(|t| t == topic)?;
        entry.topics.swap_remove(i);
        let tap = entry.tap.clone();
        if entry.topics.is_empty() {
            taps.remove(&key);
        }
        Some(tap)
    }

    /// Subscriptions by plugin and topic, and what waits in each plugin's
    /// subscriber queues.
    pub fn subscription_summary(&self) -> SubscriptionSummary {
        let taps = self.taps.lock().unwrap_or_else(|e| e.into_inner());
        let mut summary = SubscriptionSummary::default();
        for ((plugin, _), t) in taps.iter() {
            for topic in &t.topics {
                *summary.by_topic.entry((plugin.clone(), topic.clone())).or_insert(0) += 1;
            }
            *summary.queued.entry(plugin.clone()).or_insert(0) += t.tap.len();
        }
        summary
    }

    /// Takes the offer of a direct queue from a starting backbone; refuses
    /// it from apps and once the apps' inq has been chosen.
    pub fn offer_direct_inq(&self, stats: &PluginStats, queue: &Queue) -> bool {
        if stats.kind != PluginKind::BACKBONE || self.app_inq.get().is_some() {
            log::warn!("plugin '{}' offered a direct inbound queue, which only a starting backbone can", stats.name);
            return false;
        }
        self.direct_offers.lock().unwrap_or_else(|e| e.into_inner()).push((stats.name.clone(), queue.clone()));
        true
    }

    /// The queue apps send into, chosen when the first app starts (all
    /// backbones have started by then): the direct queue of the one
    /// running backbone if it offered one (each message is routed on the
    /// app's own thread), else `inq`. With several backbones every message
    /// goes through `inq`, so that all of them see it as before.
    fn app_inq(&self) -> Queue {
        self.app_inq
            .get_or_init(|| {
                let backbones = self.names(PluginKind::BACKBONE);
                let offers = self.direct_offers.lock().unwrap_or_else(|e| e.into_inner());
                match (&backbones[..], &offers[..]) {
                    ([only], [(offered_by, direct)]) if only == offered_by => {
                        log::info!("backbone '{only}' routes the apps' messages on the apps' own threads (direct inbound queue)");
                        direct.clone()
                    }
                    _ => self.inq.clone(),
                }
            })
            .clone()
    }

    /// The service table of one plugin; leaked, it lives for the process.
    fn services_for(self: &Arc<Self>, stats: Arc<PluginStats>) -> &'static HostServices {
        let inq = if stats.kind == PluginKind::APP { self.app_inq() } else { self.inq.clone() };
        let ctx =
            Box::leak(Box::new(PluginCtx { bus: self.clone(), inq: inq.counting(stats.accepted.clone()), stats }));
        Box::leak(Box::new(HostServices {
            size: std::mem::size_of::<HostServices>(),
            abi_major: threatbus_plugin_api::abi::ABI_MAJOR,
            abi_minor: threatbus_plugin_api::abi::ABI_MINOR,
            ctx: ctx as *const PluginCtx as *const c_void,
            inq: services::inq,
            parse: services::parse,
            subscribe: services::subscribe,
            unsubscribe: services::unsubscribe,
            report_failure: services::report_failure,
            log_enabled: services::log_enabled,
            log: services::log,
            log_flush: services::log_flush,
            log_max_level: services::log_max_level,
            register_metric: services::register_metric,
            offer_direct_inq: services::offer_direct_inq,
            #[cfg(feature = "abi-next")]
            next_host_entry: services::next_host_entry,
        }))
    }

    /// Loads a configured plugin and calls its entry function with its config.
    pub fn start_plugin(self: &Arc<Self>, plugin: &CheckedPlugin, config: &serde_json::Value) -> Result<(), String> {
        let name = plugin.decl.name.clone();
        let entry = crate::loader::open(plugin)?;
        let json = serde_json::to_string(config).expect("JSON values serialize");
        let stats = PluginStats::new(&plugin.decl);
        let services = self.services_for(stats.clone());
        // SAFETY: the plugin passed every loader check; the table lives for
        // the process. The entry catches the plugin's panics.
        let started = unsafe { entry(services, RStr::from_str(&json)) };
        let instance = match started {
            RResult::ROk(i) => i,
            RResult::RErr(e) if e.is_panic() => {
                return Err(format!("plugin '{name}' panicked during initialization: {}", e.message))
            }
            RResult::RErr(e) => return Err(format!("plugin '{name}' failed to initialize: {}", e.message)),
        };
        // SAFETY: the table of the instance the entry just returned.
        let fns = unsafe { PluginFns::read(&name, instance.vtable) }?;
        let running = Arc::new(RunningPlugin {
            name: name.clone(),
            state: instance.state,
            fns,
            snapshot_tx: Mutex::new(None),
            stats,
        });
        if plugin.decl.kind == PluginKind::BACKBONE {
            self.backbones.write().unwrap_or_else(|e| e.into_inner()).push(running);
        } else {
            let (tx, rx) = crossbeam_channel::bounded::<Message>(1024);
            *running.snapshot_tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
            let app = running.clone();
            let h = std::thread::Builder::new()
                .name(format!("snapshot-{name}"))
                .spawn(move || {
                    for req in rx {
                        // SAFETY: an entry of this plugin's table with its state.
                        let served =
                            app.call("while serving a snapshot", |state, f| unsafe { (f.snapshot)(state, &req) });
                        if let Err(e) = served {
                            log::error!("plugin '{}' could not serve snapshot request: {e}", app.name);
                        }
                    }
                })
                .map_err(|e| format!("cannot start snapshot thread: {e}"))?;
            self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h);
            self.apps.write().unwrap_or_else(|e| e.into_inner()).push(running);
        }
        Ok(())
    }

    /// Subscribes the core's snapshot queue. Call after the backbones
    /// started and before the apps start.
    pub fn subscribe_core(&self) -> Result<(), String> {
        for topic in [TOPIC_SNAPSHOT_REQUEST, TOPIC_SNAPSHOT_ENVELOPE] {
            self.subscribe_backbones(topic, &self.snapshot_q)?;
        }
        Ok(())
    }

    /// Starts the snapshot thread. Call once all apps are registered, so
    /// that requests made while apps start reach every app.
    pub fn start_snapshots(self: &Arc<Self>) -> Result<(), String> {
        let bus = self.clone();
        let h = std::thread::Builder::new()
            .name("snapshots".into())
            .spawn(move || bus.handle_snapshots())
            .map_err(|e| format!("cannot start snapshot thread: {e}"))?;
        self.threads.lock().unwrap_or_else(|e| e.into_inner()).push(h);
        Ok(())
    }

    fn subscribe_backbones(&self, topic: &str, queue: &Queue) -> Result<(), String> {
        let backbones = self.backbones.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut ok = 0;
        for b in &backbones {
            // SAFETY: an entry of this plugin's table with its state.
            let r =
                b.call("while subscribing", |state, f| unsafe { (f.subscribe)(state, RStr::from_str(topic), queue) });
            match r {
                Ok(()) => ok += 1,
                Err(e) => log::error!("backbone '{}' could not subscribe to {topic}: {e}", b.name),
            }
        }
        if ok == 0 && !backbones.is_empty() {
            return Err(format!("no backbone accepted the subscription to {topic}"));
        }
        Ok(())
    }

    /// `subscribe_callback` of the original: subscribe on every backbone and
    /// optionally request a snapshot; returns the snapshot id.
    pub fn subscribe(&self, topic: &str, queue: &Queue, snapshot: Duration) -> Result<Option<String>, String> {
        self.subscribe_backbones(topic, queue)?;
        if snapshot.is_zero() {
            return Ok(None);
        }
        let types: &[MessageType] = if topic == "stix2" || topic == "stix2/" {
            &[MessageType::Indicator, MessageType::Sighting]
        } else if topic.ends_with("sighting") {
            &[MessageType::Sighting]
        } else if topic.ends_with("indicator") {
            &[MessageType::Indicator]
        } else {
            log::info!("no snapshot for topic {topic}: snapshots exist for stix2/indicator and stix2/sighting only");
            return Ok(None);
        };
        let snapshot_id = uuid::Uuid::new_v4().to_string();
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).insert(snapshot_id.clone(), queue.clone());
        for &t in types {
            log::info!(
                "Requesting snapshot from all plugins for message type {} and time delta {snapshot:?}",
                t.name()
            );
            let req = SnapshotRequest { snapshot_type: t, snapshot_id: snapshot_id.clone(), snapshot };
            // Never block a subscriber forever behind a full inq.
            if let Err(e) = self.inq.send_timeout(crate::validate::from_snapshot_request(&req), self.stop_timeout) {
                log::error!("snapshot request {snapshot_id} not sent: {e}");
                return Err(format!("snapshot request not sent: the inbound queue is {e}"));
            }
        }
        Ok(Some(snapshot_id))
    }

    /// `unsubscribe_callback` of the original.
    pub fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), String> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).forget_queue(queue);
        let backbones = self.backbones.read().unwrap_or_else(|e| e.into_inner()).clone();
        for b in &backbones {
            // SAFETY: an entry of this plugin's table with its state.
            let r = b.call("while unsubscribing", |state, f| unsafe {
                (f.unsubscribe)(state, RStr::from_str(topic), queue)
            });
            if let Err(e) = r {
                log::error!("backbone '{}' could not unsubscribe from {topic}: {e}", b.name);
            }
        }
        Ok(())
    }

    fn handle_snapshots(&self) {
        while let Some(msg) = self.snapshot_q.recv() {
            match msg.kind() {
                MessageKind::SNAPSHOT_REQUEST => {
                    log::debug!("Received SnapshotRequest: {}", msg.json());
                    for app in self.apps.read().unwrap_or_else(|e| e.into_inner()).iter() {
                        if app.is_failed() {
                            continue;
                        }
                        let tx = app.snapshot_tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        if let Some(tx) = tx {
                            if tx.try_send(msg.clone()).is_err() {
                                log::warn!(
                                    "app '{}' is busy serving snapshots; dropped request {}",
                                    app.name,
                                    msg.json()
                                );
                            }
                        }
                    }
                }
                MessageKind::SNAPSHOT_ENVELOPE => match SnapshotEnvelope::from_json(msg.json()) {
                    Ok(env) => {
                        let target = self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).get(&env.snapshot_id);
                        match target {
                            Some(q) => {
                                let s = &self.snapshot_stats;
                                match q.send_timeout(crate::validate::from_stix2(&env.body), self.stop_timeout) {
                                    Ok(()) => {
                                        s.envelopes_delivered.fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(SendError::Closed) => {
                                        s.envelopes_undelivered.fetch_add(1, Ordering::Relaxed);
                                        log::debug!("requester of snapshot {} is gone", env.snapshot_id)
                                    }
                                    Err(e) => {
                                        s.envelopes_undelivered.fetch_add(1, Ordering::Relaxed);
                                        log::warn!("snapshot {} result not delivered: {e}", env.snapshot_id)
                                    }
                                }
                            }
                            // With a shared backbone (RabbitMQ), other hosts' envelopes arrive here too.
                            None => {
                                self.snapshot_stats.envelopes_unknown_id.fetch_add(1, Ordering::Relaxed);
                                log::debug!("ignoring envelope for unknown snapshot {}", env.snapshot_id)
                            }
                        }
                    }
                    Err(e) => {
                        self.snapshot_stats.envelopes_invalid.fetch_add(1, Ordering::Relaxed);
                        log::warn!("Received invalid snapshot envelope: {e}")
                    }
                },
                _ => log::warn!("Received message with unknown type on snapshot topic: {msg:?}"),
            }
        }
    }

    /// Stops plugins in parallel, each on its own thread, and waits until
    /// `deadline` at most. Returns the plugins that stopped; they are
    /// destroyed once nothing can call them any more.
    fn stop_all(&self, plugins: &[Arc<RunningPlugin>], deadline: Instant) -> Vec<Arc<RunningPlugin>> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut pending: Vec<String> = Vec::new();
        for p in plugins {
            let plugin = p.clone();
            let tx2 = tx.clone();
            let spawned = std::thread::Builder::new().name(format!("stop-{}", p.name)).spawn(move || {
                // SAFETY: an entry of this plugin's table with its state;
                // `stop` is called once.
                let r = unsafe { (plugin.fns.stop)(plugin.state) };
                let _ = tx2.send((plugin, r));
            });
            pending.push(p.name.clone());
            if let Err(e) = spawned {
                // No thread to spare (e.g. at the process's thread limit):
                // stopping must still work, so stop this one here and now.
                log::warn!("cannot start a thread to stop plugin '{}' ({e}); stopping it on this thread", p.name);
                // SAFETY: as above; the thread never ran, so `stop` is
                // called once.
                let r = unsafe { (p.fns.stop)(p.state) };
                let _ = tx.send((p.clone(), r));
            }
        }
        drop(tx);
        let mut stopped = Vec::new();
        while !pending.is_empty() {
            let (p, r) = match rx.recv_deadline(deadline) {
                Ok(done) => done,
                Err(_) => {
                    for name in &pending {
                        log::error!(
                            "plugin '{name}' did not stop within its share of core.stop_timeout; exiting anyway"
                        );
                    }
                    break;
                }
            };
            pending.retain(|n| n != &p.name);
            match r {
                RResult::ROk(()) => {
                    p.stats.stopped.store(true, Ordering::Relaxed);
                    log::debug!("plugin '{}' stopped", p.name);
                    stopped.push(p);
                }
                RResult::RErr(e) => log::error!("plugin '{}' failed to stop: {e}", p.name),
            }
        }
        stopped
    }

    /// Stops apps (no new input), then closes `inq` and lets backbones
    /// drain, then stops the core; all within one `core.stop_timeout`, of
    /// which the apps get the first half at most, so that the backbones
    /// always get time to drain.
    pub fn stop(&self) {
        log::info!("Stopping plugins...");
        let start = Instant::now();
        let deadline = start + self.stop_timeout;
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner()).clone();
        for a in &apps {
            a.snapshot_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
        let mut stopped = self.stop_all(&apps, start + self.stop_timeout / 2);
        self.inq.close();
        // A direct queue's sends still waiting for room give up now.
        for (_, direct) in self.direct_offers.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            direct.close();
        }
        let backbones = self.backbones.read().unwrap_or_else(|e| e.into_inner()).clone();
        stopped.extend(self.stop_all(&backbones, deadline));
        let left = self.inq.len();
        if left > 0 {
            log::warn!("{left} messages were still in the inbound queue at shutdown and were not delivered");
        }
        self.snapshot_q.close();
        log::info!("Stopping Threat Bus...");
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all_joined = true;
        for h in threads {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                all_joined = false;
            }
        }
        // The host's own threads (snapshot workers) are gone, every app
        // stopped before the backbones, and no plugin is called after this:
        // free the state of each plugin that stopped, so its `Drop`s run.
        if all_joined {
            for p in stopped {
                p.stats.failed.store(true, Ordering::SeqCst);
                // SAFETY: `destroy` once, after a successful `stop`, with
                // nothing left that could call the plugin.
                unsafe { (p.fns.destroy)(p.state) };
            }
        }
    }

    /// Whether backbones were started and every one of them has failed.
    pub fn all_backbones_failed(&self) -> bool {
        let backbones = self.backbones.read().unwrap_or_else(|e| e.into_inner());
        !backbones.is_empty() && backbones.iter().all(|b| b.is_failed())
    }

    pub fn names(&self, kind: PluginKind) -> Vec<String> {
        let list = if kind == PluginKind::APP { &self.apps } else { &self.backbones };
        list.read().unwrap_or_else(|e| e.into_inner()).iter().map(|p| p.name.clone()).collect()
    }
}

/// Converts a subscribe result for the FFI.
pub fn ffi_subscribe_result(r: Result<Option<String>, String>) -> RResult<ROption<RString>, RString> {
    match r {
        Ok(id) => RResult::ROk(id.map(RString::from).into()),
        Err(e) => RResult::RErr(RString::from(e)),
    }
}
