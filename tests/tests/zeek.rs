//! The zeek app plugin with a fake Zeek that plays the original
//! `threatbus.zeek` script over Broker's native protocol (plain TCP and
//! anonymous TLS, both handshake roles), a real `openssl s_client` for the
//! TLS layer, and hostile peers.

mod zeek_support;
mod zmq_support;

use serde_json::json;
use threatbus_app_zeek::value::Value;
use threatbus_app_zeek::wire::{ec, EnvelopeType, Handshake, NIL};
use threatbus_integration_tests::*;
use zeek_support::*;
use zmq_support::*;

const TAG: u32 = 0x0000_2eec;
const IND: &str = "indicator--de0c3d3f-02ee-4086-88f1-51200ac831f7";

fn indicator(n: u64, pattern: &str, remove: bool) -> String {
    let mut v = json(&indicator_json(TAG, n));
    v["pattern"] = json!(pattern);
    if remove {
        v["x_threatbus_update"] = json!("REMOVE");
    }
    v.to_string()
}

/// A zmq publisher whose connection to the bus is established (its
/// warm-up indicators reached a zmq subscriber); publish before any fake
/// Zeek subscribes, or it gets the warm-ups too.
fn synced_publisher(zmq: &ZmqBus) -> Publisher {
    let client = zmq.subscribe(json!("stix2/indicator"), 0);
    let publisher = zmq.publisher();
    publisher.sync(&[&client]);
    publisher
}

/// The record of an intel event: (id, intel type, value, operation).
fn intel(event: &threatbus_app_zeek::Event) -> (String, String, String, String) {
    assert_eq!(event.name, "Tenzir::intel");
    let Value::Vector(f) = &event.args[0] else { panic!("record expected: {event:?}") };
    assert!(matches!(f[0], Value::Timestamp(_)), "{event:?}");
    let s = |i: usize| f[i].as_str().unwrap().to_string();
    (s(1), s(2), s(3), s(4))
}

/// The whole script: peer, subscribe, intel for indicators published by a
/// zmq app (point indicators only, ADD and REMOVE), sightings to zmq
/// subscribers, ping/pong, unsubscribe.
fn plays_the_script(tls: &str, id: threatbus_app_zeek::wire::EndpointId) {
    let mut bus = ZeekBus::start(tls);
    let sightings = bus.zmq.subscribe(json!("stix2/sighting"), 0);
    let publisher = bus.zmq.publisher();
    publisher.sync(&[&sightings]);

    let stream = if tls == "anonymous" { connect_anonymous_tls(bus.zeek_port) } else { connect_tcp(bus.zeek_port) };
    let mut zeek = FakeZeek::peer(stream, id, &["threatbus/manage"]);
    assert_eq!(zeek.bus_filter, ["stix2/sighting", "threatbus/manage"]);
    let p2p = zeek.subscribe("stix2/indicator", 0);

    publisher.indicator(&indicator(1, "[domain-name:value = 'evil.com']", false));
    publisher.indicator(&indicator(2, "[domain-name:value = 'a.com'] AND [domain-name:value = 'b.com']", false));
    publisher.indicator(&indicator(3, "[url:value = 'https://evil.com/x']", false));
    publisher.indicator(&indicator(4, "[ipv4-addr:value = '10.0.0.0/8']", true));
    let mut got = Vec::new();
    for _ in 0..3 {
        let (topic, event) = zeek.recv_event();
        assert_eq!(topic, p2p);
        got.push(intel(&event));
    }
    let id = |n| indicator_id(TAG, n);
    let row = |n, t: &str, v: &str, op: &str| (id(n), t.to_string(), v.to_string(), op.to_string());
    assert_eq!(
        got,
        [
            row(1, "DOMAIN", "evil.com", "ADD"),
            row(3, "URL", "evil.com/x", "ADD"),
            row(4, "SUBNET", "10.0.0.0/8", "REMOVE")
        ],
        "the non-point indicator 2 is skipped"
    );

    let context = Value::Table(vec![(Value::string("noisy"), Value::Bool(false))]);
    zeek.send_event(
        "stix2/sighting",
        "Tenzir::sighting",
        vec![Value::Timestamp(1_704_164_645_123_456_789), Value::string(IND), context],
    );
    let s = sightings.recv_real();
    assert_eq!(s.kind, "sighting");
    let v = s.value();
    assert_eq!(v["sighting_of_ref"], IND);
    assert_eq!(v["last_seen"], "2024-01-02T03:04:05.123456Z");
    assert_eq!(v["x_threatbus_sighting_context"], json!({"noisy": false}));

    // A graceful unpeer's ping is answered with its payload.
    let bye = b"BYE\x01\x02\x03\x04\x05\x06\x07\x08".to_vec();
    zeek.send_envelope(&threatbus_app_zeek::wire::Envelope {
        sender: zeek.id,
        receiver: zeek.bus_id,
        kind: EnvelopeType::Ping,
        ttl: 16,
        topic: "<$>".into(),
        payload: bye.clone(),
    });
    let pong = zeek.recv().expect("pong");
    assert_eq!((pong.kind, pong.sender, pong.receiver, pong.payload), (EnvelopeType::Pong, zeek.bus_id, zeek.id, bye));

    zeek.send_event("threatbus/manage", "Tenzir::unsubscribe", vec![Value::string(&p2p)]);
    bus.zmq.bus.wait_for(&format!("removing subscription {p2p}"));
    // A Zeek that vanishes: its subscriptions go away with it.
    let second = zeek.subscribe("stix2/indicator", 0);
    drop(zeek);
    bus.zmq.bus.wait_for(&format!("removing subscription {second}"));
    bus.zmq.bus.wait_for("disconnected");
    let st = bus.zmq.bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.zmq.bus.log());
}

#[test]
fn fake_zeek_plays_the_script_over_plain_tcp_as_originator() {
    plays_the_script("none", LOW_ID);
}

#[test]
fn fake_zeek_plays_the_script_over_anonymous_tls_as_responder() {
    plays_the_script("anonymous", HIGH_ID);
}

/// A subscription with a snapshot: the answer reaches only that Zeek.
#[test]
fn snapshot_envelopes_reach_only_the_requesting_zeek() {
    let dir =
        PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq", "threatbus_app_zeek", "threatbus_test_app"]);
    let snap = indicator(7, "[domain-name:value = 'old.example']", false);
    let config = format!(
        "plugins:\n  backbones:\n    inmem: {{}}\n  apps:\n    zeek:\n      port: 0\n      tls: none\n    testapp:\n      snapshot_reply: [{}]\n    zmq:\n      manage: 0\n      pub: 0\n      sub: 0\n",
        serde_json::to_string(&snap).unwrap()
    );
    let mut bus = Bus::start(&config, dir.path());
    bus.wait_for("Zeek app plugin started");
    let line = bus.log().lines().find(|l| l.contains("Zeek app plugin started")).unwrap().to_string();
    let port: u16 = line.split("127.0.0.1:").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let zmq = ZmqBus::from_started(bus, dir);
    let publisher = synced_publisher(&zmq);

    let mut plain = FakeZeek::peer(connect_tcp(port), LOW_ID, &["threatbus/manage"]);
    let plain_p2p = plain.subscribe("stix2/indicator", 0);
    let mut asking = FakeZeek::peer(connect_tcp(port), HIGH_ID, &["threatbus/manage"]);
    let asking_p2p = asking.subscribe("stix2/indicator", 30 * 24 * 3600 * 1_000_000_000);
    let (topic, event) = asking.recv_event();
    assert_eq!(topic, asking_p2p);
    assert_eq!(intel(&event).0, indicator_id(TAG, 7));
    // A later indicator reaches both; for the other Zeek it is the first.
    publisher.indicator(&indicator(100, "[domain-name:value = 'new.example']", false));
    let (topic, event) = plain.recv_event();
    assert_eq!(topic, plain_p2p);
    assert_eq!(intel(&event).0, indicator_id(TAG, 100), "the snapshot reached only the Zeek that asked");
}

/// Garbage, wrong magic, wrong versions, huge lengths and malformed events
/// each close only that connection, with a log line; a good peer goes on.
#[test]
fn bad_peers_are_closed_and_others_go_on() {
    let mut bus = ZeekBus::start("none");
    let publisher = synced_publisher(&bus.zmq);
    let mut good = FakeZeek::peer(connect_tcp(bus.zeek_port), LOW_ID, &["threatbus/manage"]);
    let good_p2p = good.subscribe("stix2/indicator", 0);

    // Not a Broker peer: a wrong magic number is answered with drop_conn.
    let mut s = connect_tcp(bus.zeek_port);
    assert_eq!(Handshake::decode(&read_frame(s.as_mut()).unwrap()).unwrap(), Handshake::Probe);
    write_frame(s.as_mut(), &[6, 0x47, 0x45, 0x54, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
    match Handshake::decode(&read_frame(s.as_mut()).expect("drop_conn")).unwrap() {
        Handshake::DropConn { code, .. } => assert_eq!(code, ec::WRONG_MAGIC_NUMBER),
        other => panic!("{other:?}"),
    }
    assert!(read_frame(s.as_mut()).is_none(), "closed after drop_conn");

    // No common version.
    let mut s = connect_tcp(bus.zeek_port);
    read_frame(s.as_mut()).unwrap();
    write_frame(s.as_mut(), &Handshake::Hello { id: HIGH_ID, min_version: 2, max_version: 99 }.encode());
    match Handshake::decode(&read_frame(s.as_mut()).expect("drop_conn")).unwrap() {
        Handshake::DropConn { code, description, .. } => {
            assert_eq!(code, ec::PEER_INCOMPATIBLE);
            assert!(description.contains("unsupported versions offered"), "{description}");
        }
        other => panic!("{other:?}"),
    }

    // A frame claiming 4 GiB, raw garbage, a truncated frame.
    for bytes in [&[0xff, 0xff, 0xff, 0xff, 1, 2, 3][..], b"GET / HTTP/1.1\r\n\r\n", &[0, 0, 0, 9, 6, 0x5a]] {
        let mut s = connect_tcp(bus.zeek_port);
        read_frame(s.as_mut()).unwrap();
        s.write_all(bytes).unwrap();
        if bytes.len() == 6 {
            s.flush().unwrap();
            // The truncated frame: end the connection after it.
            drop(s);
            continue;
        }
        assert!(read_frame(s.as_mut()).is_none_or(|f| f[0] == 9), "closed (after at most a drop_conn)");
    }

    // An established peer sending a subscribe of the wrong arity is closed.
    let mut bad = FakeZeek::peer(connect_tcp(bus.zeek_port), HIGH_ID, &["threatbus/manage"]);
    bad.send_event("threatbus/manage", "Tenzir::subscribe", vec![Value::string("stix2/indicator")]);
    assert!(bad.recv().is_none(), "the peer with a malformed event was closed");
    // And one sending bytes that are no Broker value.
    let mut bad = FakeZeek::peer(connect_tcp(bus.zeek_port), HIGH_ID, &["threatbus/manage"]);
    bad.send_envelope(&threatbus_app_zeek::wire::Envelope {
        sender: bad.id,
        receiver: NIL,
        kind: EnvelopeType::Data,
        ttl: 16,
        topic: "threatbus/manage".into(),
        payload: vec![0x0e, 0xff, 0xff, 0xff, 0xff, 0x0f],
    });
    assert!(bad.recv().is_none(), "the peer with an undecodable value was closed");

    for needle in
        ["wrong magic number", "unsupported versions offered", "exceeds max_frame_size", "wrong types", "invalid data"]
    {
        bus.zmq.bus.wait_for(needle);
    }
    // The good peer still gets intel.
    publisher.indicator(&indicator(1, "[domain-name:value = 'still.example']", false));
    let (topic, event) = good.recv_event();
    assert_eq!((topic, intel(&event).0), (good_p2p, indicator_id(TAG, 1)));
    let st = bus.zmq.bus.terminate();
    assert!(st.success(), "{st:?}");
}

/// A real third-party TLS client, with the cipher suite Broker uses without
/// certificates, completes the handshake against the plugin's port.
#[test]
fn openssl_s_client_completes_broker_anonymous_tls() {
    let bus = ZeekBus::start("anonymous");
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{}", bus.zeek_port), "-tls1_2"])
        .args(["-cipher", "AECDH-AES256-SHA@SECLEVEL=0", "-groups", "P-384"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl s_client (Debian package openssl) must be installed");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Cipher is AECDH-AES256-SHA"), "{text}");
    assert!(text.contains("TLSv1.2"), "{text}");
}

/// Creates a CA and a certificate signed by it for `name` in `dir` with the
/// openssl command line; returns (ca, cert, key) paths.
fn certificates(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    if !dir.join("ca.pem").exists() {
        run(&["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "ca.key"]);
        run(&["req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test CA", "-days", "2", "-out", "ca.pem"]);
    }
    run(&["ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", &format!("{name}.key")]);
    run(&[
        "req",
        "-new",
        "-key",
        &format!("{name}.key"),
        "-subj",
        &format!("/CN={name}"),
        "-out",
        &format!("{name}.csr"),
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        &format!("{name}.pem"),
    ]);
    (dir.join("ca.pem"), dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")))
}

/// `tls: certificates`: a Zeek with a certificate of the CA peers; one
/// without a certificate is refused at the TLS handshake.
#[test]
fn certificates_mode_verifies_the_peer() {
    let scratch = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(scratch.path(), "threatbus");
    let (_, zeek_cert, zeek_key) = certificates(scratch.path(), "zeek");
    let tls = format!(
        "certificates\n      ssl_cafile: {}\n      ssl_certificate: {}\n      ssl_keyfile: {}",
        ca.display(),
        cert.display(),
        key.display()
    );
    let mut bus = ZeekBus::start(&tls);

    use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
    let connect = |with_cert: bool| {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
        b.set_ca_file(&ca).unwrap();
        if with_cert {
            b.set_certificate_file(&zeek_cert, SslFiletype::PEM).unwrap();
            b.set_private_key_file(&zeek_key, SslFiletype::PEM).unwrap();
        }
        let tcp = std::net::TcpStream::connect(("127.0.0.1", bus.zeek_port)).unwrap();
        tcp.set_read_timeout(Some(WAIT)).unwrap();
        b.build().connect("threatbus", tcp)
    };
    let stream = connect(true).expect("TLS with certificates");
    let mut zeek = FakeZeek::peer(Box::new(stream), LOW_ID, &["threatbus/manage"]);
    zeek.subscribe("stix2/indicator", 0);

    // Without a certificate the server refuses (TLS 1.3 may report it only
    // on the first read).
    let refused = match connect(false) {
        Err(_) => true,
        Ok(mut s) => {
            let mut buf = [0u8; 16];
            std::io::Read::read(&mut s, &mut buf).map_or(true, |n| n == 0)
        }
    };
    assert!(refused, "a peer without a certificate was accepted");
    bus.zmq.bus.wait_for("TLS handshake with");
    let st = bus.zmq.bus.terminate();
    assert!(st.success(), "{st:?}");
}
