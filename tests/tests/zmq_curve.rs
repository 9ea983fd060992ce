//! ZeroMQ CURVE on the zmq app's three sockets, through the real bus: a
//! real CURVE client (pyzmq, from the venv of the Python Threat Bus)
//! subscribes, publishes and receives; a client whose key is not allowed is
//! refused by the ZAP handler; bad key files stop the start with the key
//! named.

mod zmq_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;
use threatbus_integration_tests::*;
use zmq_support::*;

const TAG: u32 = 0x00c0_7e01;

/// The venv's Python with pyzmq.
fn python() -> PathBuf {
    let venv = std::env::var_os("THREATBUS_PYTHON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/threatbus-python"));
    let bin = venv.join("bin/python");
    assert!(
        bin.exists(),
        "pyzmq comes with the Python Threat Bus in {}: run `bash tests/run.sh`, which installs it",
        venv.display()
    );
    bin
}

struct Keys {
    public: String,
    secret: String,
}

fn keypair() -> Keys {
    assert_eq!(
        zmq::has("curve"),
        Some(true),
        "the tests need libzmq with CURVE: install libzmq3-dev (tests/run.sh does)"
    );
    let pair = zmq::CurveKeyPair::new().unwrap();
    Keys { public: zmq::z85_encode(&pair.public_key).unwrap(), secret: zmq::z85_encode(&pair.secret_key).unwrap() }
}

/// Writes the server's key files into `dir` (the secret one 0600).
fn key_files(dir: &Path, server: &Keys) -> (PathBuf, PathBuf) {
    let (public, secret) = (dir.join("server.public"), dir.join("server.secret"));
    std::fs::write(&public, format!("{}\n", server.public)).unwrap();
    std::fs::write(&secret, format!("{}\n", server.secret)).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    (public, secret)
}

fn curve_config(public: &Path, secret: &Path, allowed: &[&str]) -> String {
    let mut extra =
        format!("curve:\n  public_key_file: {}\n  secret_key_file: {}\n", public.display(), secret.display());
    if !allowed.is_empty() {
        extra.push_str("  allowed_clients:\n");
        for k in allowed {
            extra.push_str(&format!("    - \"{k}\"\n"));
        }
    }
    config(Ports::ANY, "").replace("      sub: 0\n", &format!("      sub: 0\n{}", indent(&extra, "      ")))
}

fn indent(s: &str, by: &str) -> String {
    s.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// A pyzmq app with CURVE: subscribes through the management port, then
/// publishes indicators until its own subscription delivers one.
const PY_APP: &str = r#"
import json, sys, zmq
manage, pub, sub, server, public, secret, indicator = sys.argv[1:8]
ctx = zmq.Context()
def curve(s):
    s.curve_serverkey, s.curve_publickey, s.curve_secretkey = server.encode(), public.encode(), secret.encode()
    s.linger = 0
    return s
req = curve(ctx.socket(zmq.REQ))
req.connect("tcp://127.0.0.1:%s" % manage)
req.send_json({"action": "subscribe", "topic": "stix2/indicator", "snapshot": 0})
if not req.poll(20000):
    sys.exit("no reply from the management port")
reply = req.recv_json()
print("REPLY", json.dumps(reply), flush=True)
s = curve(ctx.socket(zmq.SUB))
s.connect("tcp://127.0.0.1:%s" % pub)
s.setsockopt(zmq.SUBSCRIBE, reply["topic"].encode())
p = curve(ctx.socket(zmq.PUB))
p.connect("tcp://127.0.0.1:%s" % sub)
for _ in range(400):
    p.send_string("stix2/indicator " + indicator)
    if s.poll(50):
        frame = s.recv_string()
        print("RECEIVED", frame[len(reply["topic"]):], flush=True)
        break
else:
    sys.exit("nothing received")
"#;

#[test]
fn a_curve_client_with_an_allowed_key_uses_all_three_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let (server, app, stranger) = (keypair(), keypair(), keypair());
    let (public, secret) = key_files(dir.path(), &server);
    let config = curve_config(&public, &secret, &[&app.public]);
    let plugins = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let mut bus = ZmqBus::from_started(Bus::start(&config, plugins.path()), plugins);
    bus.bus.wait_for("CURVE on (1 allowed client keys)");
    let p = bus.ports;
    let indicator = indicator_json(TAG, 1);
    let out = std::process::Command::new(python())
        .args(["-c", PY_APP])
        .args([&p.manage.to_string(), &p.pub_port.to_string(), &p.sub_port.to_string()])
        .args([&server.public, &app.public, &app.secret, &indicator])
        .output()
        .expect("run the pyzmq app");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{text}");
    assert!(out.status.success(), "{text}\n{}", bus.bus.log());
    assert!(text.contains(r#""status": "success""#), "{text}");
    let received = text.lines().find_map(|l| l.strip_prefix("RECEIVED ")).expect("a delivery");
    let (kind, json) = received.split_once(' ').unwrap();
    assert_eq!(kind, "indicator");
    assert_eq!(serde_json::from_str::<serde_json::Value>(json).unwrap()["id"], indicator_id(TAG, 1));

    // A client with a key that is not allowed gets nothing.
    let req = zctx().socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_curve_serverkey(server.public.as_bytes()).unwrap();
    req.set_curve_publickey(stranger.public.as_bytes()).unwrap();
    req.set_curve_secretkey(stranger.secret.as_bytes()).unwrap();
    req.connect(&format!("tcp://127.0.0.1:{}", p.manage)).unwrap();
    req.send(json!({"action": "subscribe", "topic": "stix2/indicator"}).to_string().as_bytes(), 0).unwrap();
    bus.bus.wait_for(&format!("refused CURVE client {} from", stranger.public));
    assert_eq!(req.poll(zmq::POLLIN, 0).unwrap(), 0, "the refused client got a reply");
    assert!(bus.bus.terminate().success());
}

#[test]
fn without_a_list_any_client_with_the_server_key_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let (server, app) = (keypair(), keypair());
    let (public, secret) = key_files(dir.path(), &server);
    let plugins = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let mut bus = ZmqBus::from_started(Bus::start(&curve_config(&public, &secret, &[]), plugins.path()), plugins);
    bus.bus.wait_for("CURVE on (any client with the server key)");
    let req = zctx().socket(zmq::REQ).unwrap();
    req.set_linger(0).unwrap();
    req.set_curve_serverkey(server.public.as_bytes()).unwrap();
    req.set_curve_publickey(app.public.as_bytes()).unwrap();
    req.set_curve_secretkey(app.secret.as_bytes()).unwrap();
    req.connect(&format!("tcp://127.0.0.1:{}", bus.ports.manage)).unwrap();
    req.send(r#"{"action": "heartbeat", "topic": "x"}"#, 0).unwrap();
    assert!(req.poll(zmq::POLLIN, 30_000).unwrap() > 0, "no reply over CURVE");
    assert_eq!(req.recv_string(0).unwrap().unwrap(), r#"{"status": "error"}"#);
    assert!(bus.bus.terminate().success());
}

#[test]
fn bad_key_files_stop_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (server, other) = (keypair(), keypair());
    let (public, secret) = key_files(dir.path(), &server);
    let plugins = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
    let run = |config: &str| {
        let file = config_file(config);
        let out = run_threatbus(
            &["-c", file.path().to_str().unwrap(), "--plugin-dir", plugins.path().to_str().unwrap()],
            &[],
        );
        assert!(!out.status.success());
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    };
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let text = run(&curve_config(&public, &secret, &[]));
    assert!(text.contains("curve.secret_key_file") && text.contains("readable by others"), "{text}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&public, format!("{}\n", other.public)).unwrap();
    let text = run(&curve_config(&public, &secret, &[]));
    assert!(text.contains("does not hold the public key of secret_key_file"), "{text}");
    std::fs::write(&public, format!("{}\n", server.public)).unwrap();
    let text = run(&curve_config(&public, &secret, &["not-a-key"]));
    assert!(text.contains("curve.allowed_clients[0]"), "{text}");
}
