//! The in-memory backbone: one thread reads `inq` and hands every message to
//! each queue subscribed to a prefix of its topic. Messages are shared
//! (reference-counted), never copied per subscriber.
//!
//! Difference from the Python original: a queue subscribed under two
//! matching prefixes (e.g. `stix2` and `stix2/indicator`) receives a message
//! once, not twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use threatbus_plugin_api::{
    export_plugin, spawn_thread, Backbone, Message, PluginContext, PluginError, Queue, SendError,
};

/// The inmem section takes no keys (`inmem: {}`).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {}

#[derive(Default)]
struct Subscriptions {
    /// (topic prefix, subscribed queues)
    topics: Vec<(String, Vec<Queue>)>,
}

impl Subscriptions {
    /// Every distinct queue subscribed to a prefix of `topic`.
    fn matching(&self, topic: &str, out: &mut Vec<Queue>) {
        out.clear();
        for (prefix, queues) in &self.topics {
            if topic.starts_with(prefix.as_str()) {
                for q in queues {
                    if !out.iter().any(|o| o.id() == q.id()) {
                        out.push(q.clone());
                    }
                }
            }
        }
    }
}

struct Inmem {
    inq: Queue,
    subs: Arc<RwLock<Subscriptions>>,
    stopping: Arc<AtomicBool>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

/// Delivers one message to one queue. A blocking queue that stays full is
/// retried until the bus stops, so nothing is lost silently.
fn deliver(q: &Queue, msg: &Message, stopping: &AtomicBool) {
    loop {
        match q.send_timeout(msg.clone(), Duration::from_millis(200)) {
            Ok(()) | Err(SendError::Dropped) => return, // drops are counted by the queue's owner
            Err(SendError::Closed) => {
                log::debug!("subscriber queue {q:?} is closed; message not delivered to it");
                return;
            }
            Err(SendError::Full) => {
                if stopping.load(Ordering::Relaxed) {
                    log::warn!("subscriber queue {q:?} stayed full during shutdown; dropped {msg:?}");
                    return;
                }
            }
        }
    }
}

fn provision(inq: Queue, subs: Arc<RwLock<Subscriptions>>, stopping: Arc<AtomicBool>) {
    let mut batch = Vec::with_capacity(256);
    let mut targets = Vec::new();
    loop {
        batch.clear();
        if !inq.recv_batch(&mut batch, 256, None) {
            break;
        }
        for msg in &batch {
            subs.read().unwrap_or_else(|e| e.into_inner()).matching(msg.topic(), &mut targets);
            if targets.is_empty() {
                log::debug!("no subscriber for {}", msg.topic());
            }
            for q in &targets {
                deliver(q, msg, &stopping);
            }
        }
    }
    log::info!("In-memory backbone stopped");
}

fn start(ctx: PluginContext) -> Result<Inmem, PluginError> {
    let _: Config = ctx.config()?;
    let inq = ctx.inq();
    let subs = Arc::new(RwLock::new(Subscriptions::default()));
    let stopping = Arc::new(AtomicBool::new(false));
    let worker = {
        let (inq, subs, stopping) = (inq.clone(), subs.clone(), stopping.clone());
        spawn_thread(ctx.host(), "inmem-provisioner", move || provision(inq, subs, stopping))
            .map_err(|e| PluginError::new(format!("cannot start thread: {e}")))?
    };
    log::info!("In-memory backbone started.");
    Ok(Inmem { inq, subs, stopping, worker: Mutex::new(Some(worker)) })
}

impl Backbone for Inmem {
    fn subscribe(&self, topic: &str, queue: Queue) -> Result<(), PluginError> {
        log::info!("Adding subscription to: {topic}");
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        match subs.topics.iter_mut().find(|(t, _)| t == topic) {
            Some((_, queues)) => {
                if !queues.contains(&queue) {
                    queues.push(queue)
                }
            }
            None => subs.topics.push((topic.to_string(), vec![queue])),
        }
        Ok(())
    }

    fn unsubscribe(&self, topic: &str, queue: &Queue) -> Result<(), PluginError> {
        log::info!("Removing subscription from: {topic}");
        let mut subs = self.subs.write().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = subs.topics.iter().position(|(t, _)| t == topic) {
            subs.topics[pos].1.retain(|q| q != queue);
            if subs.topics[pos].1.is_empty() {
                subs.topics.remove(pos);
            }
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), PluginError> {
        // The host closed inq after stopping the apps; the worker forwards
        // what is left and then ends. Closing again is harmless.
        self.stopping.store(true, Ordering::Relaxed);
        self.inq.close();
        if let Some(h) = self.worker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = h.join();
        }
        Ok(())
    }
}

export_plugin!(backbone, "inmem", start);
