//! The snapshot server (a thread): answers snapshot requests for
//! indicators with `POST /attributes/restSearch` over the requested time
//! span, as the original did (one search per filter entry and per
//! organisation × type, `to_ids: true`, `from` = now − span, which MISP
//! applies to the event date), page by page, each attribute as a
//! `threatbus/snapshotenvelope` that the bus routes to the requester only.
//!
//! Requests wait in a bounded queue, so a slow MISP never blocks the host
//! thread that hands them over; when the queue is full the request is
//! refused with a log line. The same attribute found by several searches
//! is sent once.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use serde_json::{json, Map, Value};
use threatbus_plugin_api::{Message, MessageKind};
use threatbus_stix::{MessageType, SnapshotRequest};

use crate::config::Filter;
use crate::mapping::{attribute_to_indicator, Skip};
use crate::rest::Misp;
use crate::Shared;
use threatbus_http::RestError;

/// Serves requests until the sender is dropped or the plugin stops.
pub fn run(shared: Arc<Shared>, misp: Arc<Misp>, requests: Receiver<Message>, page_size: usize) {
    let inq = shared.host.inq();
    for request in requests {
        if shared.stop.is_stopped() {
            break;
        }
        let req = match SnapshotRequest::from_json(request.json()) {
            Ok(r) => r,
            Err(e) => {
                log::error!("Invalid snapshot request: {e}");
                continue;
            }
        };
        if req.snapshot_type != MessageType::Indicator {
            log::debug!("Snapshot {}: only indicator snapshots are served by MISP", req.snapshot_id);
            continue;
        }
        log::info!(
            "Snapshot {}: searching MISP for indicators of the last {} s",
            req.snapshot_id,
            req.snapshot.as_secs()
        );
        match serve(&shared, &misp, &req, page_size, &inq) {
            Ok(n) => {
                shared.counters.snapshot_envelopes.fetch_add(n, Ordering::Relaxed);
                log::info!("Snapshot {}: {n} indicators sent", req.snapshot_id);
            }
            Err(RestError::Stopped) => break,
            Err(e) => log::error!("Snapshot {}: MISP search failed, the snapshot is incomplete: {e}", req.snapshot_id),
        }
    }
}

/// The restSearch bodies of one request, without paging (the original's
/// product of filters, organisations and types).
pub fn search_bodies(filters: &[Filter], from: f64) -> Vec<Value> {
    let none = [Filter::default()];
    let filters = if filters.is_empty() { &none[..] } else { filters };
    let mut bodies = Vec::new();
    for f in filters {
        let orgs: Vec<Option<&str>> =
            if f.orgs.is_empty() { vec![None] } else { f.orgs.iter().map(|o| Some(o.0.as_str())).collect() };
        let types: Vec<Option<&str>> =
            if f.types.is_empty() { vec![None] } else { f.types.iter().map(|t| Some(t.as_str())).collect() };
        for org in &orgs {
            for ty in &types {
                let mut body = Map::new();
                body.insert("returnFormat".into(), "json".into());
                if let Some(org) = org {
                    body.insert("org".into(), (*org).into());
                }
                if let Some(ty) = ty {
                    body.insert("type".into(), (*ty).into());
                }
                if !f.tags.is_empty() {
                    body.insert("tags".into(), json!({ "OR": f.tags }));
                }
                body.insert("from".into(), json!(from));
                body.insert("to_ids".into(), true.into());
                bodies.push(Value::Object(body));
            }
        }
    }
    bodies
}

fn serve(
    shared: &Shared,
    misp: &Misp,
    req: &SnapshotRequest,
    page_size: usize,
    inq: &threatbus_plugin_api::Queue,
) -> Result<u64, RestError> {
    let now = chrono::Utc::now();
    let from = now.timestamp_micros() as f64 / 1e6 - req.snapshot.as_secs_f64();
    let id_json = Value::String(req.snapshot_id.clone()).to_string();
    let mut seen = HashSet::new();
    let mut sent = 0;
    for mut body in search_bodies(&shared.cfg.filter, from) {
        for page in 1.. {
            body["limit"] = page_size.into();
            body["page"] = page.into();
            let attrs = misp.search_attributes(&body, &shared.stop)?;
            for attr in &attrs {
                let Some(attr) = attr.as_object() else { continue };
                let indicator = match attribute_to_indicator(attr, "add", now) {
                    Ok(i) => i,
                    Err(Skip::Quiet(why)) | Err(Skip::Invalid(why)) => {
                        log::debug!("Snapshot {}: no indicator: {why}", req.snapshot_id);
                        continue;
                    }
                };
                let uuid = attr.get("uuid").and_then(Value::as_str).unwrap_or_default();
                if !seen.insert(uuid.to_string()) {
                    continue;
                }
                let envelope = format!(
                    r#"{{"type": "snapshotenvelope", "snapshot_type": {}, "snapshot_id": {id_json}, "body": {indicator}}}"#,
                    MessageType::Indicator.as_u8()
                );
                match shared.host.parse(MessageKind::SNAPSHOT_ENVELOPE, &envelope) {
                    Ok(msg) => {
                        if inq.send_or_stop(msg, shared.stop.flag()).is_err() {
                            return Err(RestError::Stopped);
                        }
                        sent += 1;
                    }
                    Err(e) => {
                        log::warn!("Snapshot {}: attribute {uuid} is not a valid indicator: {e}", req.snapshot_id)
                    }
                }
            }
            if attrs.len() < page_size {
                break;
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OrgId;

    #[test]
    fn one_search_per_filter_org_and_type() {
        let bodies = search_bodies(&[], 100.5);
        assert_eq!(bodies, vec![json!({"returnFormat": "json", "from": 100.5, "to_ids": true})]);
        let f = Filter {
            orgs: vec![OrgId("1".into()), OrgId("2".into())],
            tags: vec!["TLP:AMBER".into(), "TLP:RED".into()],
            types: vec!["ip-src".into()],
        };
        let bodies = search_bodies(&[f, Filter::default()], 7.0);
        assert_eq!(bodies.len(), 3);
        assert_eq!(
            bodies[0],
            json!({"returnFormat": "json", "org": "1", "type": "ip-src", "tags": {"OR": ["TLP:AMBER", "TLP:RED"]}, "from": 7.0, "to_ids": true})
        );
        assert_eq!(bodies[1]["org"], "2");
        assert!(bodies[2].get("org").is_none() && bodies[2].get("tags").is_none());
    }
}
