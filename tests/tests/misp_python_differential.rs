//! The misp plugin side by side with the original: one MISP ZeroMQ
//! publisher double feeds the same frames (PyMISP's fixture attributes,
//! adds, edits and deletions) to the Python Threat Bus with
//! `threatbus-misp` 2022.5.16 and to ours; a zmq app on each bus collects
//! the indicators. Every indicator of the original is one of ours with the
//! same id, type, pattern and timestamps; where ours differs or has more,
//! the difference is one of the documented fixes:
//! * IPv6 values of `ip-*` attributes map to `ipv6-addr` (original: `ipv4-addr`);
//! * file hashes, `filename`, `filename|<hash>` and `regkey|value` are mapped
//!   (original: dropped);
//! * deletions (`soft-delete`, `delete`, `deleted: true`) are removals
//!   (original: dropped or re-added);
//! * `modified` is the attribute's timestamp like `created` (original: the
//!   time of mapping, so each replay differed).
//!
//! The Python bus runs with TZ=UTC: the original reads MISP timestamps as
//! local time (fixed in ours), and in UTC both agree.

mod http_double;
mod misp_support;
mod python_support;
mod zmq_support;

use std::collections::HashMap;

use misp_support::*;
use python_support::*;
use serde_json::{json, Value};
use zmq_support::*;

const TAG: u32 = 0xd1ff_0000;
const END_TAG: u32 = 0xd1ff_e000;

/// `…:55.000Z` and `…:55Z` are the same time (the Python bus drops
/// stix2's millisecond marker when it pickles objects between processes).
fn same_time(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| v.as_str().map(|s| s.replace(".000Z", "Z"));
    norm(a).is_some() && norm(a) == norm(b)
}

fn collect(c: &Client, end: &str) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for d in recv_until_skipping_sync(c, end) {
        assert_eq!(d.kind, "indicator", "{d:?}");
        let v = d.value();
        out.entry(v["id"].as_str().unwrap().to_string()).or_default().push(v);
    }
    out.remove(end);
    out
}

/// The documented fixes: types the original drops and ours maps.
fn fixed_type(kind: &str) -> bool {
    matches!(kind, "md5" | "sha1" | "sha256" | "sha512" | "ssdeep" | "filename" | "filename|md5" | "filename|sha256")
        || matches!(kind, "filename|sha1" | "regkey" | "regkey|value")
}

#[test]
fn same_indicators_as_the_original_apart_from_documented_fixes() {
    let py_bin = python_threatbus();
    let misp = MispZmq::bind();

    let py_ports = Ports::free();
    let plugins = format!(
        "  backbones:\n    inmem: {{}}\n  apps:\n{}    misp:\n      zmq:\n        host: 127.0.0.1\n        port: {}\n",
        zmq_app_yaml(py_ports),
        misp.port
    );
    let mut py = PyBus::start(&py_bin, &plugins, py_ports, &[("TZ", "UTC")]);
    py.wait_for("ZeroMQ app plugin started");
    let c_py = py.subscribe(json!("stix2/indicator"), 0);

    let rs = start_bus(&format!("zmq:\n  host: 127.0.0.1\n  port: {}", misp.port), &[]);
    let c_rs = rs.subscribe(json!("stix2/indicator"), 0);
    misp.sync(&[&c_py, &c_rs]);

    // The fixtures, then edits and deletions of some of them.
    let fixtures = fixture_notifications();
    for n in &fixtures {
        misp.attribute(n);
    }
    let mut changes = Vec::new();
    let mut edit = domain_notification(&uuid(TAG, 1), "edited.example", "edit", false);
    changes.push(edit.clone());
    edit["action"] = json!("soft-delete");
    edit["Attribute"]["uuid"] = json!(uuid(TAG, 2));
    changes.push(edit.clone());
    edit["action"] = json!("edit");
    edit["Attribute"]["to_ids"] = json!(true);
    edit["Attribute"]["deleted"] = json!(true);
    edit["Attribute"]["uuid"] = json!(uuid(TAG, 3));
    changes.push(edit.clone());
    let mut hard_delete = domain_notification(&uuid(TAG, 4), "gone.example", "delete", true);
    hard_delete.as_object_mut().unwrap().remove("Event");
    changes.push(hard_delete);
    let mut v6 = domain_notification(&uuid(TAG, 5), "", "add", true);
    v6["Attribute"]["type"] = json!("ip-dst");
    v6["Attribute"]["value"] = json!("2001:db8::1");
    changes.push(v6);
    for n in &changes {
        misp.attribute(n);
    }
    let end = uuid(END_TAG, 1);
    misp.attribute(&domain_notification(&end, "end.example", "add", true));
    let end = format!("indicator--{end}");
    let theirs = collect(&c_py, &end);
    let ours = collect(&c_rs, &end);

    let attrs: HashMap<String, &Value> = fixtures
        .iter()
        .chain(&changes)
        .map(|n| (format!("indicator--{}", n["Attribute"]["uuid"].as_str().unwrap()), &n["Attribute"]))
        .collect();
    assert!(theirs.len() > 150, "the original produced only {} indicators:\n{}", theirs.len(), py.log());

    // Every indicator of the original is ours too.
    for (id, py_list) in &theirs {
        let attr = attrs[id];
        let ours_list = ours.get(id).unwrap_or_else(|| panic!("ours lacks {id} ({attr}); the original: {py_list:?}"));
        assert_eq!(ours_list.len(), py_list.len(), "{id}");
        for (p, r) in py_list.iter().zip(ours_list) {
            for key in ["type", "spec_version", "id", "pattern_type"] {
                assert_eq!(p[key], r[key], "{key} of {id}");
            }
            assert!(same_time(&p["created"], &r["created"]), "created of {id}: {} vs {}", p["created"], r["created"]);
            // Ours: the attribute's timestamp (its last change in MISP);
            // the original: the time it mapped the attribute.
            assert_eq!(r["modified"], r["created"], "modified of {id}");
            let ipv6 =
                attr["type"].as_str().unwrap().starts_with("ip") && attr["value"].as_str().unwrap().contains(':');
            if ipv6 {
                let expected = p["pattern"].as_str().unwrap().replace("ipv4-addr", "ipv6-addr");
                assert_eq!(r["pattern"], expected.as_str(), "{id}");
            } else {
                assert_eq!(p["pattern"], r["pattern"], "pattern of {id}");
            }
            if attr["deleted"] == true {
                // The original re-added attributes flagged as deleted.
                assert_eq!(r["x_threatbus_update"], "REMOVE", "{id}");
            } else {
                assert_eq!(p.get("x_threatbus_update"), r.get("x_threatbus_update"), "{id}");
            }
        }
    }
    // What ours has beyond that is a documented fix.
    let mut fixes = 0;
    for (id, list) in &ours {
        if theirs.contains_key(id) {
            continue;
        }
        let attr = attrs[id];
        let kind = attr["type"].as_str().unwrap();
        for r in list {
            let removal = r.get("x_threatbus_update") == Some(&json!("REMOVE"));
            assert!(fixed_type(kind) || removal, "ours has {r} for {attr}, the original nothing");
            fixes += 1;
        }
    }
    assert!(fixes > 100, "{fixes} fixed attributes");
    // The deletions the original dropped or re-added are removals in ours.
    for n in 2..=4 {
        let id = format!("indicator--{}", uuid(TAG, n));
        assert!(theirs.get(&id).is_none_or(|l| l[0].get("x_threatbus_update").is_none()), "{id}");
        assert_eq!(ours[&id][0]["x_threatbus_update"], "REMOVE", "{id}");
    }
    // The edit clearing to_ids is a removal in both.
    assert_eq!(theirs[&format!("indicator--{}", uuid(TAG, 1))][0]["x_threatbus_update"], "REMOVE");
}
