//! A fake Zeek: the connecting side of a Broker peering, as a Zeek 5+
//! running the original `threatbus.zeek` script behaves (over plain TCP or
//! anonymous TLS), and a bus with the inmem backbone, the zmq app and the
//! zeek app on OS-chosen ports.
#![allow(dead_code)]

use std::net::TcpStream;
use std::time::Duration;

use threatbus_app_zeek::client::{self, Client};
use threatbus_app_zeek::value::{self, Value};
use threatbus_app_zeek::wire::{read_filter, EndpointId, Envelope, EnvelopeType, NIL};
use threatbus_app_zeek::Event;
use threatbus_integration_tests::*;

use crate::zmq_support::{Ports, ZmqBus};

/// A bus with inmem, zmq and zeek (`tls: <mode>`), all on port 0.
pub struct ZeekBus {
    pub zmq: ZmqBus,
    pub zeek_port: u16,
}

impl ZeekBus {
    pub fn start(tls: &str) -> ZeekBus {
        let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq", "threatbus_app_zeek"]);
        let mut config = crate::zmq_support::config(Ports::ANY, "");
        config = config.replace(
            "  apps:\n",
            &format!("  apps:\n    zeek:\n      host: 127.0.0.1\n      port: 0\n      tls: {tls}\n"),
        );
        let mut bus = Bus::start(&config, dir.path());
        bus.wait_for("Zeek app plugin started");
        let line = bus.log().lines().find(|l| l.contains("Zeek app plugin started")).unwrap().to_string();
        let port = line.split("127.0.0.1:").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
        ZeekBus { zmq: ZmqBus::from_started(bus, dir), zeek_port: port }
    }
}

pub use threatbus_app_zeek::client::Stream;

/// The connecting side of a peering (the plugin's client, with the checks
/// a test wants on top).
pub struct FakeZeek {
    client: Client,
    pub id: EndpointId,
    pub bus_id: EndpointId,
    pub bus_filter: Vec<String>,
}

pub fn connect_tcp(port: u16) -> Box<dyn Stream> {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the zeek plugin");
    s.set_read_timeout(Some(WAIT)).unwrap();
    Box::new(s)
}

/// TLS as Broker's connector does without certificates.
pub fn connect_anonymous_tls(port: u16) -> Box<dyn Stream> {
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_cipher_list("AECDH-AES256-SHA@SECLEVEL=0").unwrap();
    b.set_groups_list("P-384").unwrap();
    b.set_min_proto_version(Some(SslVersion::TLS1_2)).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    let connector = b.build();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    let mut cfg = connector.configure().unwrap();
    cfg.set_verify_hostname(false);
    let tls = cfg.connect("threatbus", tcp).expect("anonymous TLS handshake");
    assert_eq!(tls.ssl().current_cipher().map(|c| c.name()), Some("AECDH-AES256-SHA"));
    Box::new(tls)
}

pub fn write_frame(s: &mut dyn Stream, payload: &[u8]) {
    client::write_frame(s, payload).unwrap();
}

/// The next frame, or `None` once the connection is closed.
pub fn read_frame(s: &mut dyn Stream) -> Option<Vec<u8>> {
    client::read_frame(s, 1 << 24).ok().flatten()
}

impl FakeZeek {
    /// Peers as Zeek does and checks that the ids decided the roles.
    pub fn peer(stream: Box<dyn Stream>, id: EndpointId, filter: &[&str]) -> FakeZeek {
        let client = Client::peer(stream, id, filter, "Tenzir").expect("peering");
        let (bus_id, bus_filter) = (client.bus_id, client.bus_filter.clone());
        FakeZeek { client, id, bus_id, bus_filter }
    }

    pub fn send_envelope(&mut self, env: &Envelope) {
        self.client.send_envelope(env).unwrap();
    }

    /// Sends an event named exactly `name` (with or without namespace).
    pub fn send_event(&mut self, topic: &str, name: &str, args: Vec<Value>) {
        let payload = value::encode(&Event { name: name.to_string(), args }.to_value());
        self.send_envelope(&Envelope {
            sender: self.id,
            receiver: NIL,
            kind: EnvelopeType::Data,
            ttl: 16,
            topic: topic.to_string(),
            payload,
        });
    }

    /// The next envelope, or `None` once the bus closed the connection.
    pub fn recv(&mut self) -> Option<Envelope> {
        self.client.recv().ok().flatten()
    }

    /// The next data message as (topic, event).
    pub fn recv_event(&mut self) -> (String, Event) {
        self.client.recv_event().expect("an event")
    }

    /// Subscribes as `threatbus.zeek` does; returns the p2p topic after
    /// checking its form (topic + 10 lowercase letters).
    pub fn subscribe(&mut self, topic: &str, snapshot_ns: i64) -> String {
        let p2p = self.client.subscribe(topic, snapshot_ns).expect("subscription");
        assert!(p2p.starts_with(topic) && p2p.len() == topic.len() + 10, "{p2p}");
        assert!(p2p[topic.len()..].bytes().all(|b| b.is_ascii_lowercase()), "{p2p}");
        p2p
    }
}

/// An endpoint id below every UUID v4 (the fake Zeek originates).
pub const LOW_ID: EndpointId = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// An endpoint id above every UUID v4 (the bus originates).
pub const HIGH_ID: EndpointId = [0xff; 16];

pub fn filter_of(payload: &[u8]) -> Vec<String> {
    read_filter(&mut threatbus_app_zeek::value::Reader::new(payload)).unwrap()
}

pub fn short_wait() -> Duration {
    Duration::from_millis(200)
}
