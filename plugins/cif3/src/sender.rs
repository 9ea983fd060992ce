//! The sender (a thread): checks that CIF answers (`GET /ping`, retried
//! with backoff while it does not, never failing the plugin), then takes
//! indicators from the plugin's bounded bus queue, maps them and submits
//! them one at a time. While CIF is slow or down the queue fills, and new
//! indicators are dropped, counted and logged: the bus never waits for CIF.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use threatbus_http::{backoff, RestError};
use threatbus_plugin_api::logging::{DropReporter, LogLimiter};
use threatbus_plugin_api::{MessageKind, Queue};

use crate::client::Cif;
use crate::mapping::to_cif;
use crate::Shared;

/// Waits until CIF answers `/ping`; false if the plugin stopped first.
fn wait_for_cif(shared: &Shared, cif: &Cif) -> bool {
    let mut attempt = 0;
    loop {
        match cif.ping() {
            Ok(()) => {
                log::info!("CIF at {} answers; submitting indicators", cif.base());
                return true;
            }
            Err(e) => {
                let delay = backoff(attempt.min(10), Duration::from_secs(60));
                log::error!(
                    "Cannot reach CIF v3 at {} (CIF {e}); trying again in {:.1} s, indicators wait in a queue of {}",
                    cif.base(),
                    delay.as_secs_f64(),
                    shared.queue_size
                );
                if shared.stop.wait(delay) {
                    return false;
                }
                attempt += 1;
            }
        }
    }
}

/// Runs until the queue is closed or the plugin stops.
pub fn run(shared: Arc<Shared>, cif: Arc<Cif>, queue: Queue) {
    if !wait_for_cif(&shared, &cif) {
        return;
    }
    let mut failures = LogLimiter::new("failed CIF submissions", Duration::from_secs(10), 20);
    let mut drops = DropReporter::new("indicators", "CIF did not keep up");
    while let Some(msg) = queue.recv() {
        if shared.stop.is_stopped() {
            break;
        }
        drops.check(&queue);
        if msg.kind() != MessageKind::INDICATOR {
            continue;
        }
        let Ok(indicator) = serde_json::from_str::<Map<String, Value>>(msg.json()) else {
            continue;
        };
        let json = match to_cif(&indicator, &shared.fields) {
            Ok(j) => j,
            Err(skip) => {
                shared.counters.skipped.fetch_add(1, Ordering::Relaxed);
                log::debug!("Not submitted to CIF: {}", skip.0);
                continue;
            }
        };
        match cif.create(&json, &shared.stop) {
            Ok(_) => {
                shared.counters.submitted.fetch_add(1, Ordering::Relaxed);
                log::debug!("Added indicator to CIF: {json}");
            }
            Err(RestError::Stopped) => break,
            Err(e) => {
                shared.counters.failed.fetch_add(1, Ordering::Relaxed);
                if failures.allow(Instant::now()) {
                    log::error!("Error adding indicator to CIF, giving up on it: CIF {e}; indicator: {json}");
                }
            }
        }
    }
    drops.finish(&queue, "the plugin stopped");
}
