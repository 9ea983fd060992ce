//! The updater (a thread): takes indicators from the plugin's bounded bus
//! queue in batches (whatever is waiting, up to `batch_size`) and applies
//! each run of additions or removals with one `tenzir` process; a batch
//! that fails (the node is down) is retried with backoff while new
//! indicators wait in the queue, where the newest are dropped and counted
//! when it is full. Added indicators go on to the historical search.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use threatbus_http::backoff;
use threatbus_plugin_api::logging::{DropReporter, LogLimiter};
use threatbus_plugin_api::{Message, MessageKind, Queue};

use crate::cli::Tenzir;
use crate::tql::{self, Ioc};
use crate::Shared;

/// Longest a table update may take.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `pipeline` until it succeeds or the plugin stops (false).
fn until_done(shared: &Shared, tenzir: &Tenzir, what: &str, pipeline: &str, input: Option<Vec<u8>>) -> bool {
    let mut attempt = 0;
    loop {
        match tenzir.run(pipeline, input.clone(), UPDATE_TIMEOUT) {
            Ok(()) => {
                if attempt > 0 {
                    log::info!("Tenzir at {} is back: {what} done", shared.cfg.endpoint);
                }
                return true;
            }
            Err(e) if what == "creating the lookup table" && e.contains("already exists") => return true,
            Err(e) => {
                let delay = backoff(attempt.min(10), Duration::from_secs(30));
                log::error!(
                    "Tenzir at {}: {what} failed: {e}; retrying in {:.1} s",
                    shared.cfg.endpoint,
                    delay.as_secs_f64()
                );
                if shared.stop.wait(delay) {
                    return false;
                }
                attempt += 1;
            }
        }
    }
}

/// The IoC and whether it is a removal, or why the indicator is skipped.
fn parse(msg: &Message) -> Result<(bool, Ioc), String> {
    let ind: Map<String, Value> = serde_json::from_str(msg.json()).map_err(|e| e.to_string())?;
    let id = ind.get("id").and_then(Value::as_str).unwrap_or_default();
    let pattern = ind.get("pattern").and_then(Value::as_str).unwrap_or_default();
    let remove = ind.get("x_threatbus_update").and_then(Value::as_str) == Some("REMOVE");
    let ioc = tql::ioc_of(id, pattern).map_err(|why| format!("{id}: {why}"))?;
    Ok((remove, ioc))
}

/// Runs until the queue is closed or the plugin stops.
pub fn run(shared: Arc<Shared>, tenzir: Arc<Tenzir>, queue: Queue, retro: Option<SyncSender<Ioc>>) {
    let table = &shared.cfg.lookup_table;
    if !until_done(&shared, &tenzir, "creating the lookup table", &tql::create_pipeline(table), None) {
        return;
    }
    log::info!("Lookup table '{table}' ready in Tenzir at {}", shared.cfg.endpoint);
    let mut batch = Vec::with_capacity(shared.cfg.batch_size);
    let mut retro_drops =
        LogLimiter::new("indicators not searched in historical data (too many waiting)", Duration::from_secs(10), 1);
    let mut drops = DropReporter::new("indicators", "Tenzir did not keep up");
    loop {
        batch.clear();
        if !queue.recv_batch(&mut batch, shared.cfg.batch_size, None) || shared.stop.is_stopped() {
            break;
        }
        drops.check(&queue);
        let ops: Vec<(bool, Ioc)> = batch
            .iter()
            .filter(|m| m.kind() == MessageKind::INDICATOR)
            .filter_map(|m| match parse(m) {
                Ok(op) => Some(op),
                Err(why) => {
                    shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
                    log::debug!("Not matched in Tenzir: {why}");
                    None
                }
            })
            .collect();
        // Runs of additions and removals, in order.
        for run in ops.chunk_by(|a, b| a.0 == b.0) {
            let remove = run[0].0;
            let input: String = run.iter().map(|(_, ioc)| tql::update_line(ioc) + "\n").collect();
            let (what, pipeline) = if remove {
                ("removing indicators", tql::erase_pipeline(table))
            } else {
                ("adding indicators", tql::update_pipeline(table))
            };
            if !until_done(&shared, &tenzir, what, &pipeline, Some(input.into_bytes())) {
                return;
            }
            let counter = if remove { &shared.counters.removed } else { &shared.counters.added };
            counter.fetch_add(run.len() as u64, Ordering::Relaxed);
            log::debug!("{what}: {} done", run.len());
            if remove {
                continue;
            }
            if let Some(tx) = &retro {
                for (_, ioc) in run {
                    match tx.try_send(ioc.clone()) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            shared.counters.retro_dropped.fetch_add(1, Ordering::Relaxed);
                            if retro_drops.allow(Instant::now()) {
                                log::warn!("Too many historical searches waiting; {} is not searched", ioc.id);
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => {}
                    }
                }
            }
        }
    }
    drops.finish(&queue, "the plugin stopped");
}
