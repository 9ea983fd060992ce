//! Doubles of MISP for the misp plugin's tests, built from MISP's
//! documented formats: its ZeroMQ publisher (a PUB socket that sends
//! `<topic> <json>` frames), its REST API (`/servers/getVersion`,
//! `/sightings/add`, `/attributes/restSearch`, with MISP's answers and
//! error shapes), and attribute notifications made from real MISP event
//! exports (`tests/fixtures/misp`).
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};
use threatbus_integration_tests::*;

use crate::http_double::*;
use crate::zmq_support::*;

/// The fixture files, in the order they are replayed.
pub const FIXTURES: &[&str] =
    &["existing_event.json", "to_delete2.json", "long_event.json", "57c4445b-c548-4654-af0b-4be3950d210f.json"];

/// Attribute notifications (`{"Attribute", "Event", "action": "add"}`) of
/// every attribute in the fixtures, as MISP publishes them.
pub fn fixture_notifications() -> Vec<Value> {
    let dir = workspace_root().join("tests/fixtures/misp");
    let mut out = Vec::new();
    for (n, file) in FIXTURES.iter().enumerate() {
        let text = std::fs::read_to_string(dir.join(file)).expect("fixture");
        let doc: Value = serde_json::from_str(&text).expect("fixture JSON");
        let ev = doc.get("Event").unwrap_or(&doc);
        // The event fields of MISP's fetchAttribute.
        let orgc_id = ev.get("orgc_id").cloned().unwrap_or(json!("2"));
        let event = json!({
            "id": ev.get("id").cloned().unwrap_or(json!((n + 1).to_string())),
            "date": ev["date"], "info": ev["info"], "uuid": ev["uuid"], "published": ev["published"],
            "analysis": ev["analysis"], "threat_level_id": ev["threat_level_id"],
            "org_id": ev.get("org_id").cloned().unwrap_or(orgc_id.clone()), "orgc_id": orgc_id,
            "distribution": ev.get("distribution").cloned().unwrap_or(json!("1")),
            "sharing_group_id": ev.get("sharing_group_id").cloned().unwrap_or(json!("0")),
            "Orgc": {"id": "2", "uuid": ev["Orgc"]["uuid"], "name": ev["Orgc"]["name"]},
        });
        let mut attrs: Vec<Value> = ev["Attribute"].as_array().cloned().unwrap_or_default();
        for obj in ev.get("Object").and_then(Value::as_array).into_iter().flatten() {
            attrs.extend(obj["Attribute"].as_array().cloned().unwrap_or_default());
        }
        for attr in attrs {
            out.push(json!({"Attribute": attr, "Event": event, "action": "add"}));
        }
    }
    out
}

/// A notification of one `domain` attribute, for syncing and markers.
pub fn domain_notification(uuid: &str, domain: &str, action: &str, to_ids: bool) -> Value {
    json!({
        "Attribute": {
            "id": "15", "event_id": "1", "object_id": "0", "object_relation": null,
            "category": "Network activity", "type": "domain", "value1": domain, "value2": "",
            "to_ids": to_ids, "uuid": uuid, "timestamp": "1614599635", "distribution": "5",
            "sharing_group_id": "0", "comment": "", "deleted": false, "disable_correlation": false,
            "first_seen": null, "last_seen": null, "value": domain,
            "Tag": [{"id": "3", "name": "TLP:AMBER", "colour": "#FFC000", "exportable": true}],
            "Sighting": []
        },
        "Event": {
            "id": "1", "date": "2021-03-01", "info": "test", "uuid": "5f7b2277-1ebc-4101-9152-032ac0a82f02",
            "published": false, "analysis": "0", "threat_level_id": "1", "org_id": "1", "orgc_id": "1",
            "distribution": "1", "sharing_group_id": "0",
            "Orgc": {"id": "1", "uuid": "5f7b21ea-52a4-49f0-87df-032ac0a82f02", "name": "ORGNAME"}
        },
        "action": action
    })
}

/// MISP's ZeroMQ publisher: a PUB socket bound on 127.0.0.1.
pub struct MispZmq {
    socket: zmq::Socket,
    pub port: u16,
}

impl MispZmq {
    pub fn bind() -> MispZmq {
        let socket = zctx().socket(zmq::PUB).expect("PUB socket");
        socket.set_sndhwm(0).expect("hwm");
        socket.bind("tcp://127.0.0.1:*").expect("bind");
        let endpoint = socket.get_last_endpoint().expect("endpoint").expect("utf-8 endpoint");
        let port = endpoint.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        MispZmq { socket, port }
    }

    /// Sends one frame, as MISP does: `<topic> <json>`.
    pub fn send(&self, topic: &str, json: &str) {
        self.socket.send(format!("{topic} {json}").as_bytes(), 0).expect("send");
    }

    pub fn send_raw(&self, frame: &[u8]) {
        self.socket.send(frame, 0).expect("send");
    }

    /// Sends an attribute notification.
    pub fn attribute(&self, notification: &Value) {
        self.send("misp_json_attribute", &notification.to_string());
    }

    /// Sends sync attributes until every client has received one as an
    /// indicator (ZeroMQ drops what a SUB socket gets before it is
    /// connected). Returns the number of sync attributes sent.
    pub fn sync(&self, clients: &[&Client]) -> u64 {
        let deadline = Instant::now() + WAIT;
        let mut done = vec![false; clients.len()];
        let mut n = 0u64;
        while done.iter().any(|d| !d) {
            assert!(Instant::now() < deadline, "no sync indicator within {WAIT:?}");
            n += 1;
            self.attribute(&domain_notification(&uuid(SYNC_TAG, n), &format!("sync{n}.example"), "add", true));
            for (i, c) in clients.iter().enumerate() {
                if !done[i] && c.try_recv(Duration::from_millis(50)).is_some() {
                    done[i] = true;
                }
            }
        }
        n
    }
}

/// Tag of the sync attributes' uuids.
pub const SYNC_TAG: u32 = 0x5111_c000;

/// Whether a delivery is a sync indicator.
pub fn is_sync(d: &Delivery) -> bool {
    d.id().contains(&format!("{SYNC_TAG:08x}-"))
}

/// Receives until the indicator `until`, without sync indicators.
pub fn recv_until_skipping_sync(c: &Client, until: &str) -> Vec<Delivery> {
    c.recv_until(until).into_iter().filter(|d| !is_sync(d)).collect()
}

/// MISP's REST API, enough of it for Threat Bus, on an [`HttpDouble`]:
/// checks the `Authorization` header, answers `/servers/getVersion`,
/// `/sightings/add` and `/attributes/restSearch` with MISP's shapes (and
/// MISP's 403 for a wrong key).
pub struct MispRest {
    pub http: HttpDouble,
    attributes: Arc<Mutex<Vec<Value>>>,
}

impl std::ops::Deref for MispRest {
    type Target = HttpDouble;
    fn deref(&self) -> &HttpDouble {
        &self.http
    }
}

impl MispRest {
    /// Starts the double on 127.0.0.1 with this API key.
    pub fn start(key: &str) -> MispRest {
        let attributes = Arc::new(Mutex::new(Vec::new()));
        let http = HttpDouble::start(Self::route(key, attributes.clone()));
        MispRest { http, attributes }
    }

    /// Like [`MispRest::start`], over HTTPS (see [`HttpDouble::start_tls`]).
    pub fn start_tls(key: &str, dir: &std::path::Path) -> (MispRest, std::path::PathBuf) {
        let attributes = Arc::new(Mutex::new(Vec::new()));
        let (http, ca) = HttpDouble::start_tls(Self::route(key, attributes.clone()), dir);
        (MispRest { http, attributes }, ca)
    }

    /// The attributes restSearch finds.
    pub fn set_attributes(&self, attrs: Vec<Value>) {
        *self.attributes.lock().unwrap() = attrs;
    }

    fn route(key: &str, attributes: Arc<Mutex<Vec<Value>>>) -> Route {
        let key = key.to_string();
        Box::new(move |rec: &Recorded| {
            if rec.header("Authorization") != Some(key.as_str()) {
                let msg = "Authentication failed. Please make sure you pass the API key of an API enabled user along in the Authorization header.";
                return (403, json!({"name": msg, "message": msg, "url": rec.path}).to_string());
            }
            let attrs = attributes.lock().unwrap();
            match (rec.method.as_str(), rec.path.as_str()) {
                ("GET", "/servers/getVersion") => (200, json!({"version": "2.4.200", "perm_sync": false}).to_string()),
                ("POST", "/sightings/add") => sighting_answer(&attrs, &rec.body),
                ("POST", "/attributes/restSearch") => (200, search_answer(&attrs, &rec.body)),
                _ => (404, json!({"name": "Not Found", "message": "Not Found", "url": rec.path}).to_string()),
            }
        })
    }
}

/// MISP's answer to `/sightings/add`: the saved row, or a `message` for an
/// unknown attribute.
fn sighting_answer(attributes: &[Value], body: &Value) -> (u16, String) {
    let id = body["id"].as_str().unwrap_or_default();
    if !attributes.iter().any(|a| a["uuid"] == id) {
        let msg = "Could not add the Sighting. Reason: No valid attributes found that match the criteria.";
        return (200, json!({"message": msg}).to_string());
    }
    let row = json!({"Sighting": {"id": "1", "attribute_id": "15", "event_id": "1", "org_id": "1",
        "date_sighting": body["timestamp"], "uuid": "a2d9d7c3-5b9d-4c7e-9c1d-2b1e4f0c7a10",
        "source": body.get("source").cloned().unwrap_or(json!("")), "type": body["type"]}});
    (200, row.to_string())
}

/// restSearch: the stored attributes matching `type`, `to_ids` and
/// `tags.OR`, paged by `limit` and `page`, as MISP streams them.
fn search_answer(attributes: &[Value], body: &Value) -> String {
    let matches = |a: &Value| -> bool {
        if body.get("type").is_some_and(|t| a["type"] != *t) {
            return false;
        }
        if body["to_ids"] == true && a["to_ids"] != true {
            return false;
        }
        if let Some(tags) = body.pointer("/tags/OR").and_then(Value::as_array) {
            let names: Vec<&Value> = a["Tag"].as_array().into_iter().flatten().map(|t| &t["name"]).collect();
            if !tags.iter().any(|t| names.contains(&t)) {
                return false;
            }
        }
        true
    };
    let found: Vec<&Value> = attributes.iter().filter(|a| matches(a)).collect();
    let page = match (body["limit"].as_u64(), body["page"].as_u64()) {
        (Some(limit), Some(page)) if page >= 1 => {
            found.into_iter().skip(((page - 1) * limit) as usize).take(limit as usize).collect()
        }
        _ => found,
    };
    let items: Vec<String> = page.iter().map(|a| a.to_string()).collect();
    format!("{{\"response\": {{\"Attribute\": [{}]}}}}\n", items.join(","))
}

/// A restSearch item (no `value1`/`value2`, a small `Event`) of a domain.
pub fn search_item(uuid: &str, domain: &str) -> Value {
    json!({
        "id": "15", "event_id": "1", "object_id": "0", "object_relation": null,
        "category": "Network activity", "type": "domain", "to_ids": true, "uuid": uuid,
        "timestamp": "1614599635", "distribution": "5", "sharing_group_id": "0", "comment": "",
        "deleted": false, "disable_correlation": false, "first_seen": null, "last_seen": null,
        "value": domain,
        "Event": {"id": "1", "info": "test", "org_id": "1", "orgc_id": "1", "uuid": "5f7b2277-1ebc-4101-9152-032ac0a82f02"},
        "Tag": [{"id": "3", "name": "TLP:AMBER", "colour": "#FFC000", "exportable": true}]
    })
}

/// A bus with inmem, zmq (port 0) and misp; `misp_yaml` is the misp
/// section's body (one `key: value` per line at its own indentation,
/// starting at column 0).
pub fn start_bus(misp_yaml: &str, env: &[(&str, &str)]) -> ZmqBus {
    let mut yaml = String::from(
        "logging:\n  console: true\n  console_verbosity: DEBUG\nplugins:\n  backbones:\n    inmem: {}\n  apps:\n    zmq:\n      host: 127.0.0.1\n      manage: 0\n      pub: 0\n      sub: 0\n    misp:\n",
    );
    for line in misp_yaml.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("      ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq", "threatbus_app_misp"]);
    let mut bus = Bus::start_with_env(&yaml, dir.path(), env);
    bus.wait_for("MISP app plugin started");
    ZmqBus::from_started(bus, dir)
}

/// The JSON object of a delivery.
pub fn object(d: &Delivery) -> Map<String, Value> {
    match d.value() {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}
