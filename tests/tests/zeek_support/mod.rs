//! A fake Zeek: the connecting side of a Broker peering, as a Zeek 5+
//! running the original `threatbus.zeek` script behaves (over plain TCP or
//! anonymous TLS), and a bus with the inmem backbone, the zmq app and the
//! zeek app on OS-chosen ports.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use threatbus_app_zeek::value::{self, Value};
use threatbus_app_zeek::wire::{read_filter, EndpointId, Envelope, EnvelopeType, Handshake, NIL};
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

/// Read or write on the peering's stream (TCP or TLS).
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// The connecting side of a peering.
pub struct FakeZeek {
    pub stream: Box<dyn Stream>,
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
    let mut frame = (payload.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(payload);
    s.write_all(&frame).unwrap();
    s.flush().unwrap();
}

/// The next frame, or `None` once the connection is closed.
pub fn read_frame(s: &mut dyn Stream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).ok()?;
    Some(buf)
}

fn handshake_msg(s: &mut dyn Stream) -> Handshake {
    let frame = read_frame(s).expect("a handshake message");
    Handshake::decode(&frame).unwrap_or_else(|e| panic!("invalid handshake message {frame:02x?}: {e}"))
}

impl FakeZeek {
    /// Peers as Zeek does: hello, then whichever role the ids decide.
    pub fn peer(mut stream: Box<dyn Stream>, id: EndpointId, filter: &[&str]) -> FakeZeek {
        let filter: Vec<String> = filter.iter().map(|s| s.to_string()).collect();
        let s = stream.as_mut();
        assert_eq!(handshake_msg(s), Handshake::Probe, "the acceptor sends a probe first");
        write_frame(s, &Handshake::Hello { id, min_version: 1, max_version: 1 }.encode());
        let (bus_id, bus_filter) = match handshake_msg(s) {
            Handshake::Hello { id: bus_id, min_version: 1, max_version: 1 } => {
                assert!(id < bus_id, "the bus says hello only when the peer's id is smaller");
                write_frame(s, &Handshake::VersionSelect { id, version: 1 }.encode());
                write_frame(s, &Handshake::OriginatorSyn { filter: filter.clone() }.encode());
                let Handshake::ResponderSynAck { filter: bus_filter } = handshake_msg(s) else { panic!("no syn-ack") };
                write_frame(s, &Handshake::OriginatorAck.encode());
                (bus_id, bus_filter)
            }
            Handshake::VersionSelect { id: bus_id, version: 1 } => {
                assert!(bus_id < id, "the bus originates only when its id is smaller");
                let Handshake::OriginatorSyn { filter: bus_filter } = handshake_msg(s) else { panic!("no syn") };
                write_frame(s, &Handshake::ResponderSynAck { filter: filter.clone() }.encode());
                assert_eq!(handshake_msg(s), Handshake::OriginatorAck);
                (bus_id, bus_filter)
            }
            other => panic!("unexpected handshake message {other:?}"),
        };
        FakeZeek { stream, id, bus_id, bus_filter }
    }

    pub fn send_envelope(&mut self, env: &Envelope) {
        write_frame(self.stream.as_mut(), &env.encode());
    }

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

    pub fn send_routing_update(&mut self, filter: &[&str]) {
        let mut payload = Vec::new();
        let filter: Vec<String> = filter.iter().map(|s| s.to_string()).collect();
        threatbus_app_zeek::wire::put_filter(&mut payload, &filter);
        self.send_envelope(&Envelope {
            sender: self.id,
            receiver: self.bus_id,
            kind: EnvelopeType::RoutingUpdate,
            ttl: 16,
            topic: "<$>".into(),
            payload,
        });
    }

    /// The next envelope, or `None` once the bus closed the connection.
    pub fn recv(&mut self) -> Option<Envelope> {
        let frame = read_frame(self.stream.as_mut())?;
        Some(Envelope::decode(&frame).expect("a valid envelope"))
    }

    /// The next data message as (topic, event).
    pub fn recv_event(&mut self) -> (String, Event) {
        loop {
            let env = self.recv().expect("the bus closed the connection");
            if env.kind != EnvelopeType::Data {
                continue;
            }
            let v = value::decode(&env.payload).expect("a Broker value");
            return (env.topic, Event::from_value(&v).expect("a Zeek event"));
        }
    }

    /// Subscribes as `threatbus.zeek` does; returns the p2p topic.
    pub fn subscribe(&mut self, topic: &str, snapshot_ns: i64) -> String {
        self.send_event(
            "threatbus/manage",
            "Tenzir::subscribe",
            vec![Value::string(topic), Value::Timespan(snapshot_ns)],
        );
        let (t, ack) = self.recv_event();
        assert_eq!((t.as_str(), ack.name.as_str()), ("threatbus/manage", "Tenzir::subscription_acknowledged"));
        let p2p = ack.args[0].as_str().expect("p2p topic").to_string();
        assert!(p2p.starts_with(topic) && p2p.len() == topic.len() + 10, "{p2p}");
        assert!(p2p[topic.len()..].bytes().all(|b| b.is_ascii_lowercase()), "{p2p}");
        self.send_routing_update(&["threatbus/manage", &p2p]);
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
