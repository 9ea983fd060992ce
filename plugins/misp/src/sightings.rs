//! The sightings reporter (a thread): takes STIX sightings from the bus
//! (`stix2/sighting`) and reports each to MISP with `POST /sightings/add`,
//! one at a time. Its bus queue is bounded: while MISP is slow or down,
//! newer sightings are dropped, counted and logged, and the bus goes on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use threatbus_plugin_api::logging::{DropReporter, LogLimiter};
use threatbus_plugin_api::{MessageKind, Queue};

use crate::mapping::sighting_body;
use crate::rest::Misp;
use crate::Shared;
use threatbus_http::RestError;

/// Reports sightings until `queue` is closed or the plugin stops.
pub fn run(shared: Arc<Shared>, misp: Arc<Misp>, queue: Queue) {
    match misp.version() {
        Ok(v) => log::info!("Reporting sightings to MISP {v} at {}", misp.base()),
        Err(e) => {
            log::warn!("MISP at {} is not usable yet (MISP {e}); sightings will be retried as they come", misp.base())
        }
    }
    let mut failures = LogLimiter::new("failed sighting reports", Duration::from_secs(10), 20);
    let mut drops = DropReporter::new("sightings", "MISP did not keep up");
    while let Some(msg) = queue.recv() {
        if shared.stop.is_stopped() {
            break;
        }
        drops.check(&queue);
        if msg.kind() != MessageKind::SIGHTING {
            continue;
        }
        let Some(body) = serde_json::from_str::<Map<String, Value>>(msg.json()).ok().and_then(|s| sighting_body(&s))
        else {
            log::debug!("Not reporting a sighting that is not of an indicator: {}", msg.json());
            continue;
        };
        match misp.add_sighting(&body, &shared.stop) {
            Ok(resp) => {
                shared.counters.sightings_reported.fetch_add(1, Ordering::Relaxed);
                log::debug!("Reported sighting: {resp}");
            }
            Err(RestError::Stopped) => break,
            Err(e) => {
                shared.counters.sightings_failed.fetch_add(1, Ordering::Relaxed);
                if failures.allow(Instant::now()) {
                    log::error!("Failed to add sighting to MISP: {body} Error: MISP {e}");
                }
            }
        }
    }
    drops.finish(&queue, "the plugin stopped");
}
