//! Retro matching: for each new indicator one search over the node's
//! historical events (the indicator's value in the fields of its kind),
//! at most `max_background_tasks` at once, each ended after
//! `retro_match_timeout` and after `retro_match_max_events` results; each
//! result becomes a RETRO sighting. Indicators wait in a bounded queue.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::Value;

use crate::cli::Tenzir;
use crate::report::{report, MatchType};
use crate::tql::{self, Ioc};
use crate::Shared;

/// Searches waiting for a free slot at most.
pub const BACKLOG: usize = 10_000;

/// The dispatcher (a thread): starts a search thread per indicator while
/// fewer than `max_background_tasks` run.
pub fn run(shared: Arc<Shared>, tenzir: Arc<Tenzir>, iocs: Receiver<Ioc>) {
    let slots = Arc::new((Mutex::new(0usize), Condvar::new()));
    for ioc in iocs {
        {
            let (lock, cond) = &*slots;
            let mut running = lock.lock().unwrap_or_else(|e| e.into_inner());
            while *running >= shared.cfg.max_background_tasks && !shared.stop.is_stopped() {
                running = cond.wait_timeout(running, Duration::from_millis(200)).unwrap_or_else(|e| e.into_inner()).0;
            }
            if shared.stop.is_stopped() {
                break;
            }
            *running += 1;
        }
        let (sh, tz, sl) = (shared.clone(), tenzir.clone(), slots.clone());
        let spawned = std::thread::Builder::new().name("tenzir-retro-query".into()).spawn(move || {
            search(&sh, &tz, &ioc);
            let (lock, cond) = &*sl;
            *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
            cond.notify_all();
        });
        if let Err(e) = spawned {
            log::error!("Cannot start a historical search: {e}");
            *slots.0.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        }
    }
}

/// One search.
fn search(shared: &Shared, tenzir: &Tenzir, ioc: &Ioc) {
    let max = shared.cfg.retro_match_max_events;
    let Some(pipeline) = tql::retro_pipeline(ioc, &shared.cfg.fields, max) else {
        return;
    };
    let mut p = match tenzir.start(&pipeline, None, shared.cfg.retro_timeout()) {
        Ok(p) => p,
        Err(e) => {
            log::error!("Historical search for {} cannot start: {e}", ioc.id);
            return;
        }
    };
    let mut line = String::new();
    let mut found = 0u64;
    while p.next_line(&mut line).is_some() {
        let Ok(event) = serde_json::from_str::<Value>(&line) else { continue };
        report(shared, &ioc.id, &ioc.value, event, MatchType::Retro);
        found += 1;
        if max > 0 && found >= max {
            p.kill();
            break;
        }
    }
    shared.counters.retro_searches.fetch_add(1, Ordering::Relaxed);
    let (status, stderr) = p.finish();
    match status {
        _ if max > 0 && found >= max => log::debug!("Historical search for {}: stopped at {max} events", ioc.id),
        Some(s) if s.success() => log::debug!("Historical search for {}: {found} events", ioc.id),
        _ if shared.stop.is_stopped() => {}
        Some(s) if s.code().is_none() => {
            log::warn!("Historical search for {} ended at retro_match_timeout after {found} events", ioc.id)
        }
        s => log::warn!(
            "Historical search for {} failed ({}): {stderr}",
            ioc.id,
            s.map_or("not run".to_string(), |s| s.to_string())
        ),
    }
}
