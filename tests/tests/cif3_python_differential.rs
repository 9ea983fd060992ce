//! The cif3 plugin side by side with the original: the Python Threat Bus
//! with `threatbus-cif3` 2022.5.16 (cifsdk 3, csirtg_indicator 1.0.13) and
//! ours each get the same indicators from a zmq app and submit to their own
//! CIF v3 double; the submitted indicators are the same, field for field,
//! apart from the random `uuid` of each.

mod cif3_support;
mod http_double;
mod python_support;
mod zmq_support;

use cif3_support::*;
use python_support::*;
use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0xd1f3_0000;

#[test]
fn same_submissions_as_the_original() {
    let py_bin = python_threatbus();
    let cif_py = cif_double("secret-token");
    let cif_rs = cif_double("secret-token");
    let cif3 = |url: &str| {
        format!(
            "api:\n  host: {url}\n  token: secret-token\n  ssl: false\ntags: [test, Malicious]\ngroup: Everyone\ntlp: AMBER\nconfidence: 8.5\n"
        )
    };

    let py_ports = Ports::free();
    let section: String = cif3(&cif_py.url()).lines().map(|l| format!("      {l}\n")).collect();
    let plugins = format!("  backbones:\n    inmem: {{}}\n  apps:\n{}    cif3:\n{section}", zmq_app_yaml(py_ports));
    let mut py = PyBus::start(&py_bin, &plugins, py_ports, &[("TZ", "UTC")]);
    py.wait_for("CIF3 plugin started");
    let rs = start_bus(&cif3(&cif_rs.url()), &[]);

    // Both apps connected; everything the warm-up sent has reached CIF.
    let c_py = py.subscribe(json!("stix2/indicator"), 0);
    let p_py = Publisher::connect(py.ports.sub_port);
    p_py.sync(&[&c_py]);
    let c_rs = rs.subscribe(json!("stix2/indicator"), 0);
    let p_rs = rs.publisher();
    p_rs.sync(&[&c_rs]);
    let start = stix_indicator(TAG + 1, 1, "[domain-name:value = 'start.marker.example']");
    let end = stix_indicator(TAG + 1, 2, "[domain-name:value = 'end.marker.example']");
    let mut inputs = vec![start];
    for (n, (pattern, _)) in mapping_cases().iter().enumerate() {
        inputs.push(stix_indicator(TAG, n as u64, pattern));
    }
    let mut removal: serde_json::Value =
        serde_json::from_str(&stix_indicator(TAG, 99, "[domain-name:value = 'removed.example']")).unwrap();
    removal["x_threatbus_update"] = json!("REMOVE");
    inputs.push(removal.to_string());
    inputs.push(end);
    for i in &inputs {
        p_py.indicator(i);
        p_rs.indicator(i);
    }
    let theirs = submitted_between(&cif_py, "start.marker.example", "end.marker.example");
    let ours = submitted_between(&cif_rs, "start.marker.example", "end.marker.example");
    assert!(theirs.len() >= 10, "the original submitted only {theirs:?}:\n{}", py.log());
    assert_eq!(ours, theirs);
    // The same request headers that matter to CIF.
    let header = |d: &http_double::HttpDouble, name: &str| {
        d.wait_request(|r| r.body["indicator"] == "6.6.6.6").header(name).map(str::to_string)
    };
    for name in ["Authorization", "Accept", "Content-Type", "Content-Encoding"] {
        assert_eq!(header(&cif_rs, name), header(&cif_py, name), "{name}");
    }
}
