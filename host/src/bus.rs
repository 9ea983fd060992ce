//! The bus core: starts plugins, forwards subscriptions to backbones, runs
//! the snapshot protocol, and stops everything in order.

use std::collections::{HashMap, VecDeque};
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use threatbus_plugin_api::abi::{HostServices, HostServices_Ref, PluginInstance, PluginKind};
use threatbus_plugin_api::abi_stable::prefix_type::PrefixTypeTrait;
use threatbus_plugin_api::abi_stable::std_types::{ROption, RResult, RStr, RString};
use threatbus_plugin_api::data::{self, MessageType, SnapshotRequest};
use threatbus_plugin_api::queue::Overflow;
use threatbus_plugin_api::{Message, MessageKind, PluginError, Queue, SendError};

use crate::loader::LoadedPlugin;
use crate::services;

/// A started plugin.
pub struct RunningPlugin {
    pub name: String,
    instance: PluginInstance,
    /// Shared with the plugin's `PluginCtx`, so that failures reported
    /// while the plugin is still starting are not lost.
    failed: Arc<AtomicBool>,
    /// Apps: queue of snapshot requests served by a worker thread.
    snapshot_tx: Mutex<Option<crossbeam_channel::Sender<Message>>>,
}

impl RunningPlugin {
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Marks the plugin as failed; returns whether it was healthy before.
    pub fn mark_failed(&self, why: &str) -> bool {
        mark_failed(&self.name, &self.failed, why)
    }

    /// Runs a plugin call; a panic marks the plugin failed.
    fn call(&self, what: &str, f: impl FnOnce(&PluginInstance) -> RResult<(), PluginError>) -> Result<(), PluginError> {
        if self.is_failed() {
            return Err(PluginError::new(format!("plugin '{}' has failed", self.name)));
        }
        let r = catch_unwind(AssertUnwindSafe(|| f(&self.instance)))
            .unwrap_or_else(|_| RResult::RErr(PluginError::panicked("unwound into the host")));
        match r {
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
    }
    was
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
}

impl Snapshots {
    fn insert(&mut self, id: String, queue: Queue) {
        self.expire();
        while self.by_id.len() >= self.max {
            match self.order.pop_front() {
                Some(old) => {
                    if self.by_id.remove(&old).is_some() {
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
                    self.by_id.remove(&id);
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
    pub name: String,
    pub bus: Arc<Bus>,
    pub failed: Arc<AtomicBool>,
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
}

impl Bus {
    pub fn new(cfg: &crate::config::Core) -> Arc<Bus> {
        Arc::new(Bus {
            inq: Queue::bounded(cfg.inq_size, Overflow::BLOCK),
            backbones: RwLock::new(Vec::new()),
            apps: RwLock::new(Vec::new()),
            snapshots: Mutex::new(Snapshots {
                by_id: HashMap::new(),
                order: VecDeque::new(),
                ttl: Duration::from_secs(cfg.snapshot_ttl.max(1)),
                max: cfg.snapshot_max.max(1),
            }),
            snapshot_q: Queue::bounded(10_000, Overflow::BLOCK),
            threads: Mutex::new(Vec::new()),
            stop_timeout: Duration::from_secs_f64(cfg.stop_timeout.max(0.1)),
        })
    }

    fn services_for(self: &Arc<Self>, name: &str, failed: Arc<AtomicBool>) -> HostServices_Ref {
        let ctx = Box::leak(Box::new(PluginCtx { name: name.to_string(), bus: self.clone(), failed }));
        HostServices {
            abi_major: threatbus_plugin_api::abi::ABI_MAJOR,
            abi_minor: threatbus_plugin_api::abi::ABI_MINOR,
            ctx: ctx as *const PluginCtx as *const c_void,
            inq: services::inq,
            subscribe: services::subscribe,
            unsubscribe: services::unsubscribe,
            log_enabled: services::log_enabled,
            log: services::log,
            log_flush: services::log_flush,
            log_max_level: services::log_max_level,
            report_failure: services::report_failure,
        }
        .leak_into_prefix()
    }

    /// Calls a plugin's entry function with its config.
    pub fn start_plugin(self: &Arc<Self>, plugin: &LoadedPlugin, config: &serde_json::Value) -> Result<(), String> {
        let name = plugin.decl.name.clone();
        let json = serde_json::to_string(config).expect("JSON values serialize");
        let failed = Arc::new(AtomicBool::new(false));
        let services = self.services_for(&name, failed.clone());
        let entry = plugin.entry;
        // SAFETY: the declaration passed every loader check.
        let started = catch_unwind(AssertUnwindSafe(|| unsafe { entry(services, RStr::from_str(&json)) }))
            .unwrap_or_else(|_| RResult::RErr(PluginError::panicked("unwound into the host")));
        let instance = match started {
            RResult::ROk(i) => i,
            RResult::RErr(e) if e.is_panic() => {
                return Err(format!("plugin '{name}' panicked during initialization: {}", e.message))
            }
            RResult::RErr(e) => return Err(format!("plugin '{name}' failed to initialize: {}", e.message)),
        };
        let running = Arc::new(RunningPlugin { name: name.clone(), instance, failed, snapshot_tx: Mutex::new(None) });
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
                        if let Err(e) =
                            app.call("while serving a snapshot", |i| unsafe { (i.vtable.snapshot())(i.state, &req) })
                        {
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
        for topic in [data::TOPIC_SNAPSHOT_REQUEST, data::TOPIC_SNAPSHOT_ENVELOPE] {
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
            match b
                .call("while subscribing", |i| unsafe { (i.vtable.subscribe())(i.state, RStr::from_str(topic), queue) })
            {
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
            if let Err(e) = self.inq.send(Message::from_snapshot_request(&req)) {
                log::error!("snapshot request {snapshot_id} not sent: {e}");
            }
        }
        Ok(Some(snapshot_id))
    }

    /// `unsubscribe_callback` of the original.
    pub fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), String> {
        self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).forget_queue(queue);
        let backbones = self.backbones.read().unwrap_or_else(|e| e.into_inner()).clone();
        for b in &backbones {
            if let Err(e) = b.call("while unsubscribing", |i| unsafe {
                (i.vtable.unsubscribe())(i.state, RStr::from_str(topic), queue)
            }) {
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
                MessageKind::SNAPSHOT_ENVELOPE => match msg.to_snapshot_envelope() {
                    Ok(env) => {
                        let target = self.snapshots.lock().unwrap_or_else(|e| e.into_inner()).get(&env.snapshot_id);
                        match target {
                            Some(q) => match q.send_timeout(Message::from_stix2(&env.body), self.stop_timeout) {
                                Ok(()) => {}
                                Err(SendError::Closed) => {
                                    log::debug!("requester of snapshot {} is gone", env.snapshot_id)
                                }
                                Err(e) => log::warn!("snapshot {} result not delivered: {e}", env.snapshot_id),
                            },
                            // With a shared backbone (RabbitMQ), other hosts' envelopes arrive here too.
                            None => log::debug!("ignoring envelope for unknown snapshot {}", env.snapshot_id),
                        }
                    }
                    Err(e) => log::warn!("Received invalid snapshot envelope: {e}"),
                },
                _ => log::warn!("Received message with unknown type on snapshot topic: {msg:?}"),
            }
        }
    }

    fn stop_one(&self, p: &Arc<RunningPlugin>) {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let plugin = p.clone();
        let spawned = std::thread::Builder::new().name(format!("stop-{}", p.name)).spawn(move || {
            let r =
                catch_unwind(AssertUnwindSafe(|| unsafe { (plugin.instance.vtable.stop())(plugin.instance.state) }))
                    .unwrap_or_else(|_| RResult::RErr(PluginError::panicked("unwound into the host")));
            let _ = tx.send(r);
        });
        if spawned.is_err() {
            log::error!("cannot start a thread to stop plugin '{}'", p.name);
            return;
        }
        match rx.recv_timeout(self.stop_timeout) {
            Ok(RResult::ROk(())) => log::debug!("plugin '{}' stopped", p.name),
            Ok(RResult::RErr(e)) => log::error!("plugin '{}' failed to stop: {e}", p.name),
            Err(_) => log::error!("plugin '{}' did not stop within {:?}; exiting anyway", p.name, self.stop_timeout),
        }
    }

    /// Stops apps (no new input), then closes `inq` and lets backbones
    /// drain, then stops the core.
    pub fn stop(&self) {
        log::info!("Stopping plugins...");
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner()).clone();
        for a in &apps {
            a.snapshot_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
            self.stop_one(a);
        }
        self.inq.close();
        let backbones = self.backbones.read().unwrap_or_else(|e| e.into_inner()).clone();
        for b in &backbones {
            self.stop_one(b);
        }
        let left = self.inq.len();
        if left > 0 {
            log::warn!("{left} messages were still in the inbound queue at shutdown and were not delivered");
        }
        self.snapshot_q.close();
        log::info!("Stopping Threat Bus...");
        let deadline = Instant::now() + self.stop_timeout;
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for h in threads {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
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
