//! Shared helpers of the RabbitMQ tests: a real `threatbus` with the real
//! rabbitmq backbone and zmq app, a real RabbitMQ on 127.0.0.1:5672
//! (started by `.ci/rabbitmq-setup.sh`), and a small AMQP client (lapin)
//! that plays a Python host: it publishes raw bodies to the exchange and
//! observes what the bus publishes there.
//!
//! Without a reachable broker the tests print a skip message and pass,
//! except with `CI=true`, where that is a failure.
//!
//! Test files `mod zmq_support;` before `mod rabbitmq_support;`.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use threatbus_integration_tests::*;

use serde_json::Value;

use crate::zmq_support::{request_raw, Client, Ports, Publisher};

pub const AMQP_PORT: u16 = 5672;
const AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Fails the test unless the broker answers: a test that needs RabbitMQ
/// never passes without it. `bash tests/run.sh` (the README's test
/// command) installs and starts it.
pub fn require_rabbitmq(test: &str) {
    let addr: SocketAddr = ([127, 0, 0, 1], AMQP_PORT).into();
    if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        panic!(
            "{test} needs RabbitMQ, which is not reachable on {addr} ({e}); run `bash tests/run.sh`, which installs and starts it"
        );
    }
}

/// Fails the test unless RabbitMQ is reachable.
#[macro_export]
macro_rules! require_rabbitmq {
    ($name:expr) => {
        rabbitmq_support::require_rabbitmq($name)
    };
}

/// A name unique to this test process and call, e.g. `tb-test-1234-3`.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// What one test bus uses.
#[derive(Clone, Debug)]
pub struct RmqSetup {
    pub exchange: String,
    pub suffix: String,
    /// Extra `key: value` lines for the rabbitmq section.
    pub extra: String,
    /// `queue.durable`; the queue is `auto_delete` when not durable, so
    /// that test queues vanish with their bus.
    pub durable: bool,
    /// Extra `key: value` lines for its `queue` subsection.
    pub queue_extra: String,
    /// Serve `/metrics` on a port the OS picks.
    pub metrics: bool,
}

impl RmqSetup {
    /// A fresh exchange and queue suffix, transient test queue.
    pub fn fresh() -> RmqSetup {
        RmqSetup {
            exchange: unique("tb-test-x"),
            suffix: unique("q"),
            extra: String::new(),
            durable: false,
            queue_extra: String::new(),
            metrics: false,
        }
    }

    /// The same exchange, another host's queue.
    pub fn peer(&self) -> RmqSetup {
        RmqSetup { suffix: unique("q"), ..self.clone() }
    }

    pub fn queue_name(&self) -> String {
        format!("threatbus.{}", self.suffix)
    }
}

fn indent_lines(s: &str, indent: &str) -> String {
    s.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("{indent}{}\n", l.trim())).collect()
}

/// The bus config: rabbitmq backbone + zmq app on `ports`.
pub fn rmq_config(ports: Ports, setup: &RmqSetup) -> String {
    let metrics = if setup.metrics { "metrics:\n  port: 0\n" } else { "" };
    format!(
        "{metrics}logging:\n  console: true\n  console_verbosity: INFO\nplugins:\n  backbones:\n    rabbitmq:\n      host: 127.0.0.1\n      port: {AMQP_PORT}\n      username: guest\n      password: guest\n      vhost: /\n      exchange_name: {}\n      reconnect_delay: 0.1\n      reconnect_max_delay: 1.0\n{}      queue:\n        name_suffix: {}\n        durable: {}\n        auto_delete: {}\n{}  apps:\n    zmq:\n      host: 127.0.0.1\n      manage: {}\n      pub: {}\n      sub: {}\n",
        setup.exchange,
        indent_lines(&setup.extra, "      "),
        setup.suffix,
        setup.durable,
        !setup.durable,
        indent_lines(&setup.queue_extra, "        "),
        ports.manage,
        ports.pub_port,
        ports.sub_port,
    )
}

/// A running bus with the rabbitmq backbone and the zmq app.
pub struct RmqBus {
    pub bus: Bus,
    pub ports: Ports,
    pub setup: RmqSetup,
    _dir: PluginDir,
}

impl RmqBus {
    /// Starts the bus and waits until both AMQP connections are up.
    pub fn start(setup: RmqSetup) -> RmqBus {
        let mut b = Self::start_no_wait(setup);
        b.bus.wait_for("RabbitMQ consumer: consuming from queue");
        b.bus.wait_for("RabbitMQ publisher: connected");
        b
    }

    /// Starts the bus and waits only for the zmq app (the broker may be down).
    pub fn start_no_wait(setup: RmqSetup) -> RmqBus {
        let ports = Ports::free();
        let dir = PluginDir::with(&["threatbus_backbone_rabbitmq", "threatbus_app_zmq"]);
        let mut bus = Bus::start(&rmq_config(ports, &setup), dir.path());
        bus.wait_for("ZeroMQ app plugin started");
        RmqBus { bus, ports, setup, _dir: dir }
    }

    /// Subscribes like a zmq app does (see `zmq_support`).
    pub fn subscribe(&self, topic: Value, snapshot: u64) -> Client {
        let req = serde_json::json!({"action": "subscribe", "topic": topic, "snapshot": snapshot}).to_string();
        let raw = request_raw(self.ports.manage, &[req.as_bytes()]);
        let reply: Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("reply {raw:?}: {e}"));
        assert_eq!(reply["status"], "success", "{reply}");
        Client::connect(self.ports.pub_port, reply["topic"].as_str().expect("p2p topic").to_string())
    }

    /// A zmq PUB socket connected to the bus, as apps publish.
    pub fn publisher(&self) -> Publisher {
        Publisher::connect(self.ports.sub_port)
    }
}

/// A small AMQP client on its own runtime, playing a Python host.
pub struct Amqp {
    rt: tokio::runtime::Runtime,
    conn: Connection,
    ch: Channel,
}

impl Amqp {
    pub fn connect() -> Amqp {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let (conn, ch) = rt.block_on(async {
            let conn = Connection::connect(
                AMQP_URI,
                ConnectionProperties::default().with_connection_name("threatbus tests".into()),
            )
            .await
            .expect("connect to RabbitMQ");
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(ConfirmSelectOptions::default()).await.expect("confirm_select");
            (conn, ch)
        });
        Amqp { rt, conn, ch }
    }

    /// Declares a fanout exchange the way pika does (non-durable unless told).
    pub fn declare_fanout(&self, exchange: &str, durable: bool) {
        self.rt
            .block_on(self.ch.exchange_declare(
                exchange.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { durable, ..Default::default() },
                FieldTable::default(),
            ))
            .expect("exchange_declare");
    }

    /// Publishes a raw body like pika's `basic_publish(exchange, "", body)`
    /// (no properties) and waits for the broker's confirm.
    pub fn publish(&self, exchange: &str, body: &[u8]) {
        let c = self
            .rt
            .block_on(async {
                self.ch
                    .basic_publish(
                        exchange.into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default(),
                    )
                    .await?
                    .await
            })
            .expect("publish");
        assert!(matches!(c, Confirmation::Ack(_)), "publish not confirmed: {c:?}");
    }

    /// Binds a private, exclusive queue to `exchange` and consumes it.
    pub fn observe(&self, exchange: &str) -> Observer<'_> {
        self.observe_queue(exchange, "")
    }

    /// Consumes `queue` (declared exclusive; server-named when empty) bound
    /// to `exchange`.
    pub fn observe_queue(&self, exchange: &str, queue: &str) -> Observer<'_> {
        let consumer = self
            .rt
            .block_on(async {
                let q = self
                    .ch
                    .queue_declare(
                        queue.into(),
                        QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                        FieldTable::default(),
                    )
                    .await?;
                self.ch
                    .queue_bind(
                        q.name().clone(),
                        exchange.into(),
                        "".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                self.ch
                    .basic_consume(
                        q.name().clone(),
                        "".into(),
                        BasicConsumeOptions { no_ack: true, ..Default::default() },
                        FieldTable::default(),
                    )
                    .await
            })
            .expect("observer queue");
        Observer { amqp: self, consumer }
    }

    /// (messages ready, consumers) of a queue, or `None` if it does not exist.
    pub fn queue_state(&self, queue: &str) -> Option<(u32, u32)> {
        self.rt.block_on(async {
            // A failed passive declare closes its channel: use a fresh one.
            let ch = self.conn.create_channel().await.expect("channel");
            let r = ch
                .queue_declare(
                    queue.into(),
                    QueueDeclareOptions { passive: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await
                .ok()
                .map(|q| (q.message_count(), q.consumer_count()));
            let _ = ch.close(200, "OK".into()).await;
            r
        })
    }

    /// Declares a queue exactly as the Python backbone does (pika encodes
    /// `x-max-length` as a signed 32-bit `I`).
    pub fn declare_python_queue(&self, queue: &str, durable: bool, auto_delete: bool, mode: &str, max_items: i32) {
        let mut args = FieldTable::default();
        args.insert("x-queue-mode".into(), AMQPValue::LongString(mode.into()));
        if max_items != 0 {
            args.insert("x-max-length".into(), AMQPValue::LongInt(max_items));
        }
        self.rt
            .block_on(self.ch.queue_declare(
                queue.into(),
                QueueDeclareOptions { durable, auto_delete, ..Default::default() },
                args,
            ))
            .expect("queue_declare as pika does");
    }

    pub fn delete_queue(&self, queue: &str) {
        let _ = self.rt.block_on(self.ch.queue_delete(queue.into(), QueueDeleteOptions::default()));
    }

    pub fn delete_exchange(&self, exchange: &str) {
        let _ = self.rt.block_on(self.ch.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()));
    }
}

impl Drop for Amqp {
    fn drop(&mut self) {
        let _ = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(2), self.conn.close(200, "OK".into())).await });
    }
}

/// The consumer side of [`Amqp::observe`].
pub struct Observer<'a> {
    amqp: &'a Amqp,
    consumer: lapin::Consumer,
}

impl Observer<'_> {
    /// The next body within `timeout`.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        self.amqp.rt.block_on(async {
            match tokio::time::timeout(timeout, self.consumer.next()).await {
                Ok(Some(Ok(d))) => Some(d.data),
                Ok(Some(Err(e))) => panic!("observer consumer failed: {e}"),
                Ok(None) => panic!("observer consumer ended"),
                Err(_) => None,
            }
        })
    }

    /// The next body; panics after [`WAIT`].
    pub fn recv(&mut self) -> Vec<u8> {
        self.try_recv(WAIT).unwrap_or_else(|| panic!("nothing published to the exchange within {WAIT:?}"))
    }

    /// The next body (as a string) for which `pred` holds, skipping others.
    pub fn recv_matching(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let body = String::from_utf8(self.recv()).expect("the bus publishes UTF-8 JSON");
            if pred(&body) {
                return body;
            }
        }
    }
}

/// Runs `rabbitmqctl` (as root, like `.ci/rabbitmq-setup.sh`) and returns
/// its stdout; panics on failure.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let out = Command::new("rabbitmqctl").args(args).output().expect("run rabbitmqctl");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A dead-letter policy for one queue, cleared on drop.
pub struct Policy(String);

impl Policy {
    pub fn dead_letter(queue: &str, dlx: &str) -> Policy {
        let name = unique("tb-test-policy");
        let pattern = format!("^{}$", queue.replace('.', "\\."));
        let definition = format!(r#"{{"dead-letter-exchange":"{dlx}"}}"#);
        rabbitmqctl(&["set_policy", "--apply-to", "queues", &name, &pattern, &definition]);
        Policy(name)
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").args(["clear_policy", &self.0]).output();
    }
}

/// Publishes `bad` bodies straight to a fresh bus's exchange and checks
/// that each is rejected once (to a dead-letter exchange, not requeued),
/// logged, and that the bus still routes from AMQP and from zmq afterwards.
/// Message ids use `tag`.
pub fn assert_bad_bodies_dead_lettered(bad: &[Vec<u8>], tag: u32) {
    use crate::zmq_support::{indicator_id, indicator_json};
    let amqp = Amqp::connect();
    let setup = RmqSetup::fresh();
    // Rejected messages go to a dead-letter exchange by policy; acked ones
    // would not.
    let dlx = unique("tb-test-dlx");
    amqp.declare_fanout(&dlx, false);
    let mut dead = amqp.observe(&dlx);
    let _policy = Policy::dead_letter(&setup.queue_name(), &dlx);
    let mut bus = RmqBus::start(setup.clone());
    let client = bus.subscribe(serde_json::json!("stix2/"), 0);
    let app = bus.publisher();
    app.sync(&[&client]);

    for body in bad {
        amqp.publish(&setup.exchange, body);
    }
    // The bus still delivers: a good body after the bad ones arrives.
    let good = indicator_json(tag, 1);
    amqp.publish(&setup.exchange, good.as_bytes());
    assert_eq!(client.recv_real().json, good, "the bus still routes after the bad bodies");
    bus.bus.wait_for_count("rejected undecodable message", bad.len());

    let mut got: Vec<Vec<u8>> = (0..bad.len()).map(|_| dead.recv()).collect();
    let mut want = bad.to_vec();
    got.sort();
    want.sort();
    assert!(got == want, "every bad body was rejected to the dead-letter exchange");
    assert_eq!(bus.bus.count("rejected undecodable message"), bad.len(), "rejected once each, not requeued");

    // And through zmq, too.
    app.indicator(&indicator_json(tag, 2));
    assert_eq!(client.recv_real().id(), indicator_id(tag, 2));
    let st = bus.bus.terminate();
    assert!(st.success(), "{st:?}\n{}", bus.bus.log());
    amqp.delete_exchange(&dlx);
    amqp.delete_exchange(&setup.exchange);
}
