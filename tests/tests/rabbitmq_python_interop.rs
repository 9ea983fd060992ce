//! A Rust host and the original Python Threat Bus (PyPI `threatbus`,
//! `threatbus-rabbitmq`, `threatbus-zmq` 2022.5.16, installed by
//! `.ci/python-threatbus-setup.sh`) on one RabbitMQ exchange exchange
//! indicators, sightings, snapshot requests and snapshot envelopes both
//! ways, each host serving its own zmq apps.
//!
//! Needs RabbitMQ and the Python venv (`THREATBUS_PYTHON_VENV`, default
//! `/opt/threatbus-python`); without them the test fails, saying how to
//! get them (`bash tests/run.sh`).

mod python_support;
mod zmq_support;
#[macro_use]
mod rabbitmq_support;

use std::path::Path;
use std::time::{Duration, Instant};

use python_support::*;
use rabbitmq_support::*;
use serde_json::{json, Value};
use threatbus_integration_tests::*;
use zmq_support::*;

const TAG: u32 = 0x0000_0c03;

/// The Python host with the rabbitmq backbone on the test's exchange and a
/// zmq app on free ports.
fn start_python_bus(bin: &Path, setup: &RmqSetup) -> PyBus {
    let ports = Ports::free();
    let plugins = format!(
        "  backbones:\n    rabbitmq:\n      host: 127.0.0.1\n      port: {AMQP_PORT}\n      username: guest\n      password: guest\n      vhost: /\n      exchange_name: {}\n      queue:\n        name_suffix: {}\n        name_join_symbol: .\n        durable: false\n        auto_delete: true\n        lazy: true\n        exclusive: false\n        max_items: 0\n  apps:\n{}",
        setup.exchange,
        setup.suffix,
        python_support::zmq_app_yaml(ports)
    );
    PyBus::start(bin, &plugins, ports, &[])
}

/// An indicator as Python serializes it, with a `created` whose
/// milliseconds do not end in 0: the Python bus passes objects through
/// multiprocessing queues (pickle), which drops stix2's millisecond
/// precision marker, so a parsed `…22.530Z` leaves a Python host as
/// `…22.53Z`. Byte-for-byte comparisons use timestamps without that quirk;
/// [`same_json_up_to_fraction_zeros`] covers it.
fn py_indicator(n: u64) -> String {
    indicator_json(TAG, n).replace("22.530Z", "22.531Z")
}

/// Equal JSON once trailing zeros of fractional seconds are dropped from
/// every timestamp string.
fn same_json_up_to_fraction_zeros(a: &str, b: &str) -> bool {
    fn norm(v: &mut Value) {
        match v {
            Value::String(s) if s.ends_with('Z') && s.contains('T') && s.contains('.') => {
                let (head, _) = s.split_at(s.len() - 1);
                *s = format!("{}Z", head.trim_end_matches('0').trim_end_matches('.'));
            }
            Value::Array(xs) => xs.iter_mut().for_each(norm),
            Value::Object(m) => m.values_mut().for_each(norm),
            _ => {}
        }
    }
    let (mut a, mut b) = (json(a), json(b));
    norm(&mut a);
    norm(&mut b);
    a == b
}

/// The next delivery with this `id` (skipping others).
fn recv_id(c: &Client, id: &str) -> Delivery {
    loop {
        let d = c.recv_real();
        if d.id() == id {
            return d;
        }
    }
}

/// The next non-warm-up delivery of `kind`.
fn recv_kind(c: &Client, kind: &str) -> Delivery {
    loop {
        let d = c.recv_real();
        if d.kind == kind {
            return d;
        }
    }
}

#[test]
fn rust_and_python_hosts_share_one_exchange() {
    require_rabbitmq!("rust_and_python_hosts_share_one_exchange");
    let py_bin = python_threatbus();
    let amqp = Amqp::connect();
    let rs_setup = RmqSetup::fresh();
    let py_setup = rs_setup.peer();

    let mut py = start_python_bus(&py_bin, &py_setup);
    py.wait_for("ZeroMQ app plugin started");
    py.wait_for("RabbitMQ backbone started.");
    // The Python consumer declares its queue asynchronously; wait until it
    // consumes.
    let deadline = Instant::now() + WAIT;
    while amqp.queue_state(&py_setup.queue_name()).map(|s| s.1) != Some(1) {
        assert!(Instant::now() < deadline, "the Python host did not consume its queue:\n{}", py.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let rs = RmqBus::start(rs_setup);

    let c_rs = rs.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let c_py = py.subscribe(json!(["stix2/indicator", "stix2/sighting"]), 0);
    let app_rs = rs.publisher();
    let app_py = Publisher::connect(py.ports.sub_port);
    // Warm-ups published on either host reach the apps of both.
    app_rs.sync(&[&c_rs, &c_py]);
    app_py.sync(&[&c_rs, &c_py]);

    // Rust → Python and Python → Rust, byte for byte.
    let ind = py_indicator(1);
    app_rs.indicator(&ind);
    assert_eq!(recv_kind(&c_py, "indicator").json, ind, "Python host delivers the Rust host's indicator");
    assert_eq!(recv_kind(&c_rs, "indicator").json, ind);
    let sig = sighting_json(TAG, 2, &indicator_id(TAG, 1));
    app_py.sighting(&sig);
    assert_eq!(recv_kind(&c_rs, "sighting").json, sig, "Rust host delivers the Python host's sighting");
    assert_eq!(recv_kind(&c_py, "sighting").json, sig);

    // A snapshot requested on the Rust host is served by an app of the
    // Python host: request and envelope cross the exchange.
    let requester = rs.subscribe(json!("stix2/indicator"), 7);
    let req = recv_kind(&c_py, "snapshotrequest");
    let reqv = req.value();
    assert_eq!((reqv["type"].as_str(), reqv["snapshot_type"].as_u64()), (Some("snapshotrequest"), Some(1)), "{reqv}");
    assert_eq!(reqv["snapshot"], 7 * 86_400);
    let id = reqv["snapshot_id"].as_str().expect("snapshot_id");
    app_rs.sync(&[&requester]);
    let body = py_indicator(3);
    let env = format!(r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "{id}", "body": {body}}}"#);
    app_py.send("threatbus/snapshotenvelope", &env);
    assert_eq!(recv_kind(&requester, "indicator").json, body, "the Python app's snapshot reached the Rust requester");

    // And the other way round: requested on the Python host, served by a
    // Rust host's app.
    let py_requester = py.subscribe(json!("stix2/indicator"), 3);
    // (c_rs saw the Rust host's own 7-day request earlier; skip it.)
    let reqv = loop {
        let v = recv_kind(&c_rs, "snapshotrequest").value();
        if v["snapshot"] != 7 * 86_400 {
            break v;
        }
    };
    assert_eq!(reqv["snapshot"], 3 * 86_400, "{reqv}");
    let id = reqv["snapshot_id"].as_str().expect("snapshot_id");
    app_py.sync(&[&py_requester]);
    let body = py_indicator(4);
    let env = format!(r#"{{"type": "snapshotenvelope", "snapshot_type": 1, "snapshot_id": "{id}", "body": {body}}}"#);
    app_rs.send("threatbus/snapshotenvelope", &env);
    assert_eq!(
        recv_kind(&py_requester, "indicator").json,
        body,
        "the Rust app's snapshot reached the Python requester"
    );

    // The Python quirk: `.530Z` comes out of the Python host as `.53Z`; the
    // Rust host accepts that and both denote the same instant.
    let ind = indicator_json(TAG, 5);
    app_rs.indicator(&ind);
    let from_py = recv_id(&c_py, &indicator_id(TAG, 5)).json;
    assert!(same_json_up_to_fraction_zeros(&from_py, &ind), "{from_py}\n{ind}");
    let ind = indicator_json(TAG, 6);
    app_py.indicator(&ind);
    let from_py = recv_id(&c_rs, &indicator_id(TAG, 6)).json;
    assert!(same_json_up_to_fraction_zeros(&from_py, &ind), "{from_py}\n{ind}");

    let log = py.log();
    assert!(!log.contains("error decoding message"), "the Python host decoded everything:\n{log}");
    drop(py);
    amqp.delete_exchange(&py_setup.exchange);
}
