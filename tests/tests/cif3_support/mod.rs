//! A double of CIF v3's REST API (bearded-avenger, as `cifsdk` 3 sees it)
//! on the shared web API double, and a bus with the cif3 plugin.
#![allow(dead_code)]

use serde_json::{json, Value};
use threatbus_integration_tests::*;

use crate::http_double::*;
use crate::zmq_support::*;

/// CIF's REST API: `GET /ping` and `POST /indicators` for a token; 401 for
/// any other token, as CIF answers.
pub fn cif_double(token: &str) -> HttpDouble {
    HttpDouble::start(route(token))
}

/// Like [`cif_double`] on a given port (to bring CIF up late).
pub fn cif_double_on(token: &str, port: u16) -> HttpDouble {
    HttpDouble::start_on(route(token), port)
}

fn route(token: &str) -> Route {
    let auth = format!("Token token={token}");
    Box::new(move |rec: &Recorded| {
        if rec.header("Authorization") != Some(auth.as_str()) {
            return (401, json!({"message": "unauthorized"}).to_string());
        }
        match (rec.method.as_str(), rec.path.as_str()) {
            ("GET", "/ping") => (200, json!({"status": "success", "message": "success", "data": 1.0}).to_string()),
            ("POST", "/indicators") if rec.body.is_object() => {
                (201, json!({"message": "success", "data": 1}).to_string())
            }
            ("POST", "/indicators") => (422, json!({"message": "invalid indicator"}).to_string()),
            _ => (404, json!({"message": "not found"}).to_string()),
        }
    })
}

/// A bus with inmem, zmq (port 0) and cif3; `cif3_yaml` is the cif3
/// section's body (lines at column 0).
pub fn start_bus(cif3_yaml: &str, env: &[(&str, &str)]) -> ZmqBus {
    let mut yaml = String::from(
        "logging:\n  console: true\n  console_verbosity: DEBUG\nplugins:\n  backbones:\n    inmem: {}\n  apps:\n    zmq:\n      host: 127.0.0.1\n      manage: 0\n      pub: 0\n      sub: 0\n    cif3:\n",
    );
    for line in cif3_yaml.lines().filter(|l| !l.trim().is_empty()) {
        yaml.push_str("      ");
        yaml.push_str(line);
        yaml.push('\n');
    }
    let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq", "threatbus_app_cif3"]);
    let mut bus = Bus::start_with_env(&yaml, dir.path(), env);
    bus.wait_for("CIF3 plugin started");
    ZmqBus::from_started(bus, dir)
}

/// A STIX indicator with this pattern, as an app publishes it.
pub fn stix_indicator(tag: u32, n: u64, pattern: &str) -> String {
    json!({
        "type": "indicator", "spec_version": "2.1", "id": indicator_id(tag, n),
        "created": "2021-03-22T10:00:00.123Z", "modified": "2021-03-22T10:00:00.123Z",
        "pattern": pattern, "pattern_type": "stix", "pattern_version": "2.1",
        "valid_from": "2021-03-22T10:00:00.123Z"
    })
    .to_string()
}

/// Indicators that exercise the mapping: (pattern, submitted?).
pub fn mapping_cases() -> Vec<(String, bool)> {
    let md5 = "AB".to_string() + &"0".repeat(30);
    vec![
        ("[domain-name:value = 'EVIL.example.com']".into(), true),
        ("[ipv4-addr:value = '6.6.6.6']".into(), true),
        ("[ipv4-addr:value = '010.001.002.003']".into(), true),
        ("[ipv4-addr:value = '10.0.0.0/8']".into(), true),
        ("[ipv6-addr:value = '2001:DB8::1']".into(), true),
        ("[url:value = 'HTTP://Evil.example.com/Path/']".into(), true),
        ("[url:value = 'https://evil.example.com/a?']".into(), true),
        ("[email-addr:value = 'Bad@Evil.example.com']".into(), true),
        (format!("[file:hashes.MD5 = '{md5}']"), true),
        (format!("[file:hashes.'SHA-1' = '{}']", "c".repeat(40)), true),
        (format!("[file:hashes.'SHA-256' = '{}']", "D".repeat(64)), true),
        ("[domain-name:value = '5e1f2787-fcfc-4718-a58a-00b4c0a82f06.example']".into(), true),
        ("[domain-name:value = 'localhost']".into(), false),
        ("[url:value = 'evil.example.com/x']".into(), false),
        ("[file:hashes.SSDEEP = '3:a:b']".into(), false),
        ("[x509-certificate:hashes.MD5 = 'ab000000000000000000000000000000']".into(), false),
        ("[mac-addr:value = '00:11:22:33:44:55']".into(), false),
        ("[ipv4-addr:value = '1.2.3.4'] AND [ipv4-addr:value = '1.2.3.5']".into(), false),
        ("[ipv4-addr:value = '1.2.3.4' AND ipv4-addr:value = '1.2.3.5']".into(), false),
        ("[ipv6-addr:value = '2001:db8::1/32']".into(), false),
    ]
}

/// The submitted indicators of `double` (bodies, without the random uuid),
/// after the one whose value is `after` and up to the one whose value is
/// `until`, which is waited for.
pub fn submitted_between(double: &HttpDouble, after: &str, until: &str) -> Vec<Value> {
    double.wait_request(|r| r.path == "/indicators" && r.body["indicator"] == until);
    let all: Vec<Value> = double
        .requests()
        .into_iter()
        .filter(|r| r.path == "/indicators")
        .map(|r| {
            let mut b = r.body;
            if let Some(m) = b.as_object_mut() {
                m.remove("uuid");
            }
            b
        })
        .collect();
    let start = all.iter().position(|b| b["indicator"] == after).map_or(0, |i| i + 1);
    let end = all.iter().position(|b| b["indicator"] == until).expect("until");
    all[start..end].to_vec()
}
