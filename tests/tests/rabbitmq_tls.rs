//! The rabbitmq backbone over TLS (amqps) against the real RabbitMQ, whose
//! TLS listener on 5671 `.ci/rabbitmq-setup.sh` configures with a test CA;
//! and the password from a file or the environment instead of the config.

mod zmq_support;
#[macro_use]
mod rabbitmq_support;

use std::path::Path;

use rabbitmq_support::*;
use serde_json::json;
use threatbus_integration_tests::*;
use zmq_support::*;

const TAG: u32 = 0x0000_0a51;
const TLS_PORT: u16 = 5671;
const TEST_CA: &str = "/etc/rabbitmq/threatbus-test-tls/ca.pem";

/// Fails unless RabbitMQ's TLS listener and the test CA are there.
fn require_tls_listener(test: &str) {
    require_rabbitmq(test);
    assert!(
        Path::new(TEST_CA).exists() && std::net::TcpStream::connect(("127.0.0.1", TLS_PORT)).is_ok(),
        "{test} needs RabbitMQ's TLS listener on {TLS_PORT} and the test CA {TEST_CA}; run `bash tests/run.sh`, \
         whose RabbitMQ setup makes both"
    );
}

/// The usual test config, with `port`, the password lines and extra keys
/// of the rabbitmq section replaced.
fn tls_config(ports: Ports, setup: &RmqSetup, password_lines: &str, extra: &str) -> String {
    let base = rmq_config(ports, setup);
    let with_port = base.replace(&format!("      port: {AMQP_PORT}\n"), &format!("      port: {TLS_PORT}\n"));
    assert_ne!(with_port, base, "the port line moved");
    let rest = with_port.replace("      password: guest\n", &format!("{password_lines}{extra}"));
    assert_ne!(rest, with_port, "the password line moved");
    rest
}

fn start(config: &str, env: &[(&str, &str)]) -> (Bus, Ports, PluginDir) {
    let dir = PluginDir::with(&["threatbus_backbone_rabbitmq", "threatbus_app_zmq"]);
    let mut bus = Bus::start_with_env(config, dir.path(), env);
    bus.wait_for("ZeroMQ app plugin started");
    let log = bus.log();
    let line = log.lines().find(|l| l.contains("ZeroMQ app plugin started")).unwrap();
    let num = |after: &str| -> u16 {
        let rest = &line[line.find(after).unwrap() + after.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().unwrap()
    };
    let manage_at = line.find("management tcp://").unwrap();
    let manage = line[manage_at..].split(',').next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    (bus, Ports { manage, pub_port: num(", pub "), sub_port: num(", sub ") }, dir)
}

fn subscribe(ports: Ports) -> Client {
    let raw =
        request_raw(ports.manage, &[json!({"action": "subscribe", "topic": "stix2/indicator"}).to_string().as_bytes()]);
    let reply: serde_json::Value = serde_json::from_str(&raw).unwrap();
    Client::connect(ports.pub_port, reply["topic"].as_str().unwrap().to_string())
}

#[test]
fn amqps_with_the_ca_and_a_password_file_carries_messages() {
    require_tls_listener("amqps_with_the_ca_and_a_password_file_carries_messages");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "guest\n").unwrap();
    let setup = RmqSetup::fresh();
    let cfg = tls_config(
        Ports::ANY,
        &setup,
        &format!("      password_file: {}\n", secret.path().display()),
        &format!("      tls:\n        ca_file: {TEST_CA}\n"),
    );
    let (mut bus, ports, _dir) = start(&cfg, &[]);
    bus.wait_for(&format!("RabbitMQ publisher: connected to amqps://127.0.0.1:{TLS_PORT}/"));
    bus.wait_for("RabbitMQ consumer: consuming from queue");
    let a = subscribe(ports);
    let app = Publisher::connect(ports.sub_port);
    app.sync(&[&a]);
    app.indicator(&indicator_json(TAG, 1));
    assert_eq!(a.recv_real().id(), indicator_id(TAG, 1));
    assert!(!bus.log().contains("guest\n"), "the password is never logged");
    assert!(bus.terminate().success());
}

#[test]
fn amqps_refuses_a_broker_it_cannot_verify() {
    require_tls_listener("amqps_refuses_a_broker_it_cannot_verify");
    // No ca_file: the system's trust store does not know the test CA.
    let setup = RmqSetup::fresh();
    let cfg = tls_config(Ports::ANY, &setup, "      password: guest\n", "      tls: {}\n");
    let (mut bus, _ports, _dir) = start(&cfg, &[]);
    let failed = format!("RabbitMQ publisher: connection to amqps://127.0.0.1:{TLS_PORT}/ failed to open");
    bus.wait_for(&failed);
    let log = bus.log();
    let line = log.lines().find(|l| l.contains(&failed)).unwrap();
    assert!(line.to_lowercase().contains("certificate"), "the reason names the certificate: {line}");
    assert!(!log.contains("RabbitMQ publisher: connected"), "{log}");
    assert!(bus.terminate().success());
}

#[test]
fn the_password_can_come_from_the_environment() {
    require_tls_listener("the_password_can_come_from_the_environment");
    let setup = RmqSetup::fresh();
    let cfg = tls_config(Ports::ANY, &setup, "", &format!("      tls:\n        ca_file: {TEST_CA}\n"));
    let (mut bus, _ports, _dir) = start(&cfg, &[("THREATBUS_PLUGINS__BACKBONES__RABBITMQ__PASSWORD", "guest")]);
    bus.wait_for("RabbitMQ publisher: connected to amqps://");
    assert!(bus.terminate().success());
    // Without it, the config names the missing key.
    let dir = PluginDir::with(&["threatbus_backbone_rabbitmq", "threatbus_app_zmq"]);
    let file = config_file(&cfg);
    let out = run_threatbus(&["-c", file.path().to_str().unwrap(), "--plugin-dir", dir.path().to_str().unwrap()], &[]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("password: required (or password_file)"), "{text}");
}
