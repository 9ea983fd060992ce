//! Live matching (a thread): one long-running `context_lookup` pipeline
//! looks up every event the node imports in the lookup table, by every
//! configured field; each hit becomes a LIVE sighting. When the pipeline
//! ends (the node went away), it is restarted with backoff.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use threatbus_http::backoff;

use crate::cli::Tenzir;
use crate::report::{report, MatchType};
use crate::{tql, Shared};

/// Runs until the plugin stops.
pub fn run(shared: Arc<Shared>, tenzir: Arc<Tenzir>) {
    let pipeline = tql::live_pipeline(&shared.cfg.lookup_table, &shared.cfg.fields);
    let mut attempt = 0;
    while !shared.stop.is_stopped() {
        let started = Instant::now();
        match tenzir.start(&pipeline, None, None) {
            Ok(mut p) => {
                log::info!("Live matching in Tenzir at {} running", shared.cfg.endpoint);
                let mut line = String::new();
                while p.next_line(&mut line).is_some() {
                    let Ok(event) = serde_json::from_str::<Value>(&line) else {
                        log::warn!(
                            "Live matching: not JSON: {}",
                            threatbus_plugin_api::logging::excerpt(line.as_bytes())
                        );
                        continue;
                    };
                    for (value, id) in tql::live_matches(&event) {
                        report(&shared, &id, &value, event.clone(), MatchType::Live);
                    }
                }
                let (status, stderr) = p.finish();
                if shared.stop.is_stopped() {
                    break;
                }
                log::error!(
                    "Live matching in Tenzir at {} ended ({}): {stderr}",
                    shared.cfg.endpoint,
                    status.map_or("killed".to_string(), |s| s.to_string())
                );
            }
            Err(e) => log::error!("Live matching cannot start: {e}"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            attempt = 0;
        }
        let delay = backoff(attempt.min(10), Duration::from_secs(30));
        log::info!("Restarting live matching in {:.1} s", delay.as_secs_f64());
        if shared.stop.wait(delay) {
            break;
        }
        attempt += 1;
    }
}
