//! The rabbitmq path and its ceiling: the bus with the rabbitmq backbone
//! (zmq app → bus → RabbitMQ with publisher confirms → bus → zmq app)
//! against a plain AMQP relay through the same broker that does only the
//! broker's part of that work: ZeroMQ SUB → publish with confirms (up to
//! 1,000 unconfirmed, as the backbone's default) → consume from its own
//! queue (prefetch 1,000, every delivery acked) → ZeroMQ PUB.

use futures_util::stream::{FuturesUnordered, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};

use crate::{artifacts, fmt_rate, median, run_once, start_bus_backbone, start_relay_process, Args, Target};

const AMQP_URI: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const WINDOW: usize = 1000;

/// The relay process (`threatbus-bench amqp-relay`): runs until killed.
pub fn relay(sub_port: u16, pub_port: u16, exchange: &str) {
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(0).unwrap();
    sub.set_subscribe(b"stix2/").unwrap();
    sub.bind(&format!("tcp://127.0.0.1:{sub_port}")).unwrap();
    let publ = ctx.socket(zmq::PUB).unwrap();
    publ.set_sndhwm(0).unwrap();
    publ.bind(&format!("tcp://127.0.0.1:{pub_port}")).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4 * WINDOW);
    std::thread::spawn(move || loop {
        match sub.recv_bytes(0) {
            Ok(frame) => {
                if tx.blocking_send(frame).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let props = || ConnectionProperties::default();
        let pub_conn = Connection::connect(AMQP_URI, props()).await.expect("RabbitMQ on 127.0.0.1:5672");
        let sub_conn = Connection::connect(AMQP_URI, props()).await.expect("RabbitMQ on 127.0.0.1:5672");
        let pch = pub_conn.create_channel().await.unwrap();
        pch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        pch.exchange_declare(
            exchange.into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions { auto_delete: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
        .unwrap();
        let cch = sub_conn.create_channel().await.unwrap();
        let queue = cch
            .queue_declare(
                "".into(),
                QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap();
        cch.queue_bind(queue.name().clone(), exchange.into(), "".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .unwrap();
        cch.basic_qos(WINDOW as u16, BasicQosOptions::default()).await.unwrap();
        let mut consumer = cch
            .basic_consume(queue.name().clone(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .unwrap();
        let forward = async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                publ.send(&delivery.data[..], 0).unwrap();
                delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
        };
        let publish = async move {
            let mut confirms = FuturesUnordered::new();
            loop {
                tokio::select! {
                    frame = rx.recv(), if confirms.len() < WINDOW => {
                        let Some(frame) = frame else { break };
                        let c = pch
                            .basic_publish(exchange.into(), "".into(), BasicPublishOptions::default(), &frame, BasicProperties::default())
                            .await
                            .unwrap();
                        confirms.push(c);
                    }
                    Some(c) = confirms.next(), if !confirms.is_empty() => {
                        c.expect("publisher confirm");
                    }
                }
            }
        };
        tokio::join!(forward, publish);
    });
}

fn start_relay(exchange: &str) -> Target {
    // Its queue is bound once it consumes; run_once's warm-up waits for
    // frames to come through.
    start_relay_process("amqp-relay", &["--exchange", exchange])
}

/// `threatbus-bench rabbitmq`: the bus and the relay alternating, one
/// subscriber, median of `--runs`.
pub fn run(args: &Args) {
    println!(
        "threatbus-bench rabbitmq: N={} indicators to 1 subscriber through RabbitMQ on 127.0.0.1:5672, bus vs plain AMQP relay, {} runs",
        args.count, args.runs
    );
    let mut bus_rates = Vec::new();
    let mut relay_rates = Vec::new();
    let mut tag = 11_000u32;
    for run in 0..args.runs {
        for name in ["bus", "relay"] {
            let exchange = format!("tb-bench-{}-{run}-{name}", std::process::id());
            let t = if name == "bus" {
                let backbone = format!(
                    "    rabbitmq:\n      host: 127.0.0.1\n      port: 5672\n      username: guest\n      password: guest\n      vhost: /\n      exchange_name: {exchange}\n      queue:\n        name_suffix: {exchange}\n        durable: false\n        auto_delete: true\n"
                );
                start_bus_backbone(&artifacts(args), &["libthreatbus_backbone_rabbitmq.so"], &backbone, "")
            } else {
                start_relay(&exchange)
            };
            tag += 1;
            let o = run_once(&t, 1, args.count, None, args, tag);
            drop(t);
            let rate = o.received as f64 / o.elapsed.as_secs_f64().max(1e-9);
            let cpu = o.cpu.map(|c| format!("{:.1}", c.as_secs_f64() * 1e6 / o.received.max(1) as f64));
            println!(
                "  run {} {name:<5}: {:>8} indicators/s, lost {} of {} ({} CPU µs/indicator in the bus or relay process)",
                run + 1,
                fmt_rate(rate),
                o.expected - o.received,
                o.expected,
                cpu.unwrap_or_else(|| "?".into())
            );
            if name == "bus" {
                bus_rates.push(rate);
            } else {
                relay_rates.push(rate);
            }
        }
    }
    let (b, r) = (median(bus_rates), median(relay_rates));
    println!(
        "\n| target | indicators/s to 1 subscriber (median) |\n|---|---:|\n| threatbus (rabbitmq + zmq) | {} |\n| plain AMQP relay (confirms, same broker) | {} |\n\nbus / relay: {:.0}%",
        fmt_rate(b),
        fmt_rate(r),
        100.0 * b / r
    );
}
