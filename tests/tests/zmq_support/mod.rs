//! Shared helpers of the zmq tests: a real `threatbus` with the real inmem
//! and zmq plugins, and real ZeroMQ clients that behave like the Python apps
//! (a REQ socket per management request, SUB on the p2p topic, PUB
//! to the sub port).
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use threatbus_integration_tests::*;

/// One ZeroMQ context per test process.
pub fn zctx() -> &'static zmq::Context {
    static CTX: OnceLock<zmq::Context> = OnceLock::new();
    CTX.get_or_init(zmq::Context::new)
}

/// The three ports of one bus.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub manage: u16,
    pub pub_port: u16,
    pub sub_port: u16,
}

impl Ports {
    /// Port 0 everywhere: the OS picks.
    pub const ANY: Ports = Ports { manage: 0, pub_port: 0, sub_port: 0 };

    pub fn free() -> Ports {
        loop {
            let p = Ports { manage: free_port(), pub_port: free_port(), sub_port: free_port() };
            if p.manage != p.pub_port && p.pub_port != p.sub_port && p.manage != p.sub_port {
                return p;
            }
        }
    }
}

/// A running bus with inmem + zmq.
pub struct ZmqBus {
    pub bus: Bus,
    pub ports: Ports,
    _dir: PluginDir,
}

/// The config the tests use; `extra` is appended to the zmq section
/// (one `key: value` per line, no indentation).
pub fn config(ports: Ports, extra: &str) -> String {
    config_with_backbone("inmem", ports, extra)
}

/// Like [`config`], with another backbone.
pub fn config_with_backbone(backbone: &str, ports: Ports, extra: &str) -> String {
    let mut s = format!(
        "logging:\n  console: true\n  console_verbosity: INFO\nplugins:\n  backbones:\n    {backbone}: {{}}\n  apps:\n    zmq:\n      host: 127.0.0.1\n      manage: {}\n      pub: {}\n      sub: {}\n",
        ports.manage, ports.pub_port, ports.sub_port
    );
    for line in extra.lines().filter(|l| !l.trim().is_empty()) {
        s.push_str("      ");
        s.push_str(line.trim());
        s.push('\n');
    }
    s
}

impl ZmqBus {
    /// A bus on ports the OS picks (port 0), so parallel tests never race
    /// for a port; the real ports come from the plugin's start-up line.
    pub fn start() -> ZmqBus {
        Self::start_with(Ports::ANY, "")
    }

    pub fn start_with(ports: Ports, extra: &str) -> ZmqBus {
        let dir = PluginDir::with(&["threatbus_backbone_inmem", "threatbus_app_zmq"]);
        let bus = Bus::start(&config(ports, extra), dir.path());
        Self::from_started(bus, dir)
    }

    /// A bus the caller started (any build of the host, any backbone)
    /// whose zmq app binds port 0, once its zmq app is up.
    pub fn from_started(mut bus: Bus, dir: PluginDir) -> ZmqBus {
        bus.wait_for("ZeroMQ app plugin started");
        let ports = bound_ports(&bus.log());
        ZmqBus { bus, ports, _dir: dir }
    }

    /// Sends one management request (raw bytes) and returns the raw reply.
    pub fn request_raw(&self, frames: &[&[u8]]) -> String {
        request_raw(self.ports.manage, frames)
    }

    /// Sends one management request and returns the parsed reply.
    pub fn request(&self, req: &str) -> Value {
        let raw = self.request_raw(&[req.as_bytes()]);
        serde_json::from_str(&raw).unwrap_or_else(|e| panic!("reply {raw:?} is not JSON: {e}"))
    }

    /// The `status` of the reply to `req`.
    pub fn status(&self, req: &str) -> String {
        self.request(req)["status"].as_str().expect("status is a string").to_string()
    }

    /// Subscribes like an app does and connects the SUB socket.
    pub fn subscribe(&self, topic: Value, snapshot: u64) -> Client {
        let req = serde_json::json!({"action": "subscribe", "topic": topic, "snapshot": snapshot});
        let reply = self.request(&req.to_string());
        assert_eq!(reply["status"], "success", "{reply}");
        assert_eq!(reply["pub_port"], self.ports.pub_port, "{reply}");
        assert_eq!(reply["sub_port"], self.ports.sub_port, "{reply}");
        let p2p = reply["topic"].as_str().expect("p2p topic").to_string();
        Client::connect(self.ports.pub_port, p2p)
    }

    /// A PUB socket connected to the bus's sub port, as apps publish.
    pub fn publisher(&self) -> Publisher {
        Publisher::connect(self.ports.sub_port)
    }
}

/// The ports from `ZeroMQ app plugin started: management tcp://H:M, pub P, sub S`.
fn bound_ports(log: &str) -> Ports {
    let line = log.lines().find(|l| l.contains("ZeroMQ app plugin started")).expect("start-up line");
    let num = |after: &str| -> u16 {
        let rest = &line[line.find(after).unwrap_or_else(|| panic!("{after:?} in {line}")) + after.len()..];
        rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("port")
    };
    let manage_at = line.find("management tcp://").expect("management endpoint");
    let manage = line[manage_at..].split(',').next().unwrap().rsplit(':').next().unwrap().parse().expect("port");
    Ports { manage, pub_port: num(", pub "), sub_port: num(", sub ") }
}

/// One REQ round trip to the management port (a new socket per request,
/// like the Python apps).
pub fn request_raw(manage: u16, frames: &[&[u8]]) -> String {
    try_request_raw(manage, frames).unwrap_or_else(|| panic!("no management reply within {WAIT:?}"))
}

/// Like [`request_raw`]; `None` when no reply came within [`WAIT`].
pub fn try_request_raw(manage: u16, frames: &[&[u8]]) -> Option<String> {
    let s = zctx().socket(zmq::REQ).unwrap();
    s.set_linger(0).unwrap();
    s.connect(&format!("tcp://127.0.0.1:{manage}")).unwrap();
    s.send_multipart(frames.iter().copied(), 0).unwrap();
    if s.poll(zmq::POLLIN, WAIT.as_millis() as i64).unwrap() == 0 {
        return None;
    }
    let parts = s.recv_multipart(0).unwrap();
    assert_eq!(parts.len(), 1, "management replies are single frames");
    Some(String::from_utf8(parts.into_iter().next().unwrap()).expect("reply is UTF-8"))
}

/// One delivered frame `<p2p><type> <json>`.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub kind: String,
    pub json: String,
}

impl Delivery {
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.json).unwrap_or_else(|e| panic!("{}: not JSON: {e}", self.json))
    }
    pub fn id(&self) -> String {
        self.value()["id"].as_str().unwrap_or_default().to_string()
    }
    pub fn is_warmup(&self) -> bool {
        is_warmup_id(&self.id())
    }
}

/// The app side of one subscription.
pub struct Client {
    pub p2p: String,
    pub sub: zmq::Socket,
}

impl Client {
    pub fn connect(pub_port: u16, p2p: String) -> Client {
        let sub = zctx().socket(zmq::SUB).unwrap();
        sub.set_linger(0).unwrap();
        sub.set_rcvhwm(0).unwrap();
        sub.connect(&format!("tcp://127.0.0.1:{pub_port}")).unwrap();
        sub.set_subscribe(p2p.as_bytes()).unwrap();
        Client { p2p, sub }
    }

    /// The next frame within `timeout`, split into type and JSON.
    pub fn try_recv(&self, timeout: Duration) -> Option<Delivery> {
        if self.sub.poll(zmq::POLLIN, timeout.as_millis() as i64).unwrap() == 0 {
            return None;
        }
        let frame = self.sub.recv_bytes(0).unwrap();
        assert!(!self.sub.get_rcvmore().unwrap(), "deliveries are single frames");
        let text = String::from_utf8(frame).expect("deliveries are UTF-8");
        let rest = text.strip_prefix(&self.p2p).unwrap_or_else(|| panic!("frame without my p2p topic: {text}"));
        let (kind, json) = rest.split_once(' ').unwrap_or_else(|| panic!("frame without a space: {text}"));
        Some(Delivery { kind: kind.to_string(), json: json.to_string() })
    }

    /// The next frame; panics after [`WAIT`].
    pub fn recv(&self) -> Delivery {
        self.try_recv(WAIT).unwrap_or_else(|| panic!("{}: nothing received within {WAIT:?}", self.p2p))
    }

    /// The next frame that is not a warm-up message.
    pub fn recv_real(&self) -> Delivery {
        loop {
            let d = self.recv();
            if !d.is_warmup() {
                return d;
            }
        }
    }

    /// Everything up to and including the message with id `until`
    /// (warm-ups left out).
    pub fn recv_until(&self, until: &str) -> Vec<Delivery> {
        let mut out = Vec::new();
        loop {
            let d = self.recv();
            if d.is_warmup() {
                continue;
            }
            let done = d.id() == until;
            out.push(d);
            if done {
                return out;
            }
        }
    }
}

/// An app's publishing socket.
pub struct Publisher {
    pub sock: zmq::Socket,
}

impl Publisher {
    pub fn connect(sub_port: u16) -> Publisher {
        let sock = zctx().socket(zmq::PUB).unwrap();
        sock.set_linger(1000).unwrap();
        sock.set_sndhwm(0).unwrap();
        sock.connect(&format!("tcp://127.0.0.1:{sub_port}")).unwrap();
        Publisher { sock }
    }

    pub fn send_raw(&self, frame: &[u8]) {
        self.sock.send(frame, 0).unwrap();
    }

    pub fn send(&self, topic: &str, json: &str) {
        self.send_raw(format!("{topic} {json}").as_bytes());
    }

    pub fn indicator(&self, json: &str) {
        self.send("stix2/indicator", json);
    }

    pub fn sighting(&self, json: &str) {
        self.send("stix2/sighting", json);
    }

    /// Publishes warm-up indicators and sightings until every client has
    /// received one: then the publisher's and the clients' connections and
    /// ZeroMQ subscriptions are established, and everything published later
    /// reaches them. Clients skip warm-ups with [`Client::recv_real`].
    pub fn sync(&self, clients: &[&Client]) {
        let deadline = Instant::now() + WAIT;
        let mut done = vec![false; clients.len()];
        let mut n = 0u64;
        while done.iter().any(|d| !d) {
            assert!(Instant::now() < deadline, "clients did not connect within {WAIT:?}");
            n += 1;
            self.indicator(&indicator_json(WARMUP_TAG, n));
            self.sighting(&sighting_json(WARMUP_TAG, n, &indicator_id(WARMUP_TAG, n)));
            for (i, c) in clients.iter().enumerate() {
                if !done[i] && c.try_recv(Duration::from_millis(20)).is_some() {
                    done[i] = true;
                }
            }
        }
    }
}

/// Tag of warm-up message ids.
pub const WARMUP_TAG: u32 = 0x0000_beef;

fn is_warmup_id(id: &str) -> bool {
    id.split_once("--").is_some_and(|(_, uuid)| uuid.starts_with(&format!("{WARMUP_TAG:08x}-")))
}

/// A valid random-looking UUIDv4 built from a tag and a number.
pub fn uuid(tag: u32, n: u64) -> String {
    format!("{tag:08x}-{:04x}-4000-8000-{:012x}", (n >> 48) & 0xffff, n & 0xffff_ffff_ffff)
}

pub fn indicator_id(tag: u32, n: u64) -> String {
    format!("indicator--{}", uuid(tag, n))
}

/// An indicator exactly as Python's `stix2` serializes it (about 330 bytes).
pub fn indicator_json(tag: u32, n: u64) -> String {
    format!(
        r#"{{"type": "indicator", "spec_version": "2.1", "id": "{}", "created": "2021-04-20T07:38:22.530Z", "modified": "2021-04-20T07:38:22.530Z", "pattern": "[ipv4-addr:value = '10.{}.{}.{}']", "pattern_type": "stix", "pattern_version": "2.1", "valid_from": "2021-04-20T07:38:22.53Z"}}"#,
        indicator_id(tag, n),
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        n & 0xff
    )
}

pub fn sighting_id(tag: u32, n: u64) -> String {
    format!("sighting--{}", uuid(tag, n))
}

/// A sighting exactly as Python's `stix2` serializes it.
pub fn sighting_json(tag: u32, n: u64, of: &str) -> String {
    format!(
        r#"{{"type": "sighting", "spec_version": "2.1", "id": "{}", "created": "2021-05-03T10:00:01.123Z", "modified": "2021-05-03T10:00:01.123Z", "last_seen": "2021-05-03T10:00:00.5Z", "sighting_of_ref": "{of}", "x_threatbus_sighting_context": {{"noisy": false}}}}"#,
        sighting_id(tag, n)
    )
}

/// Parses JSON for comparisons.
pub fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{s}: not JSON: {e}"))
}
