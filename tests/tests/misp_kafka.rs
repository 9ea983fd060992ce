//! The misp plugin's Kafka intake in the real bus against librdkafka's
//! mock cluster (real Kafka wire protocol, consumer groups and committed
//! offsets; it runs inside this test process and listens on 127.0.0.1).
//! No Kafka server can be installed from the registries this project
//! reaches, so the mock cluster is the peer.

mod http_double;
mod misp_support;
mod zmq_support;

use std::collections::HashSet;
use std::time::Duration;

use misp_support::*;
use rdkafka::config::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, DefaultProducerContext, Producer};
use serde_json::json;
use zmq_support::*;

const TAG: u32 = 0x4af4_0000;

struct Kafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
    producer: BaseProducer,
}

impl Kafka {
    fn start(topics: &[&str]) -> Kafka {
        let cluster = MockCluster::new(1).expect("mock cluster");
        for t in topics {
            cluster.create_topic(t, 1, 1).expect("topic");
        }
        let producer: BaseProducer =
            ClientConfig::new().set("bootstrap.servers", cluster.bootstrap_servers()).create().expect("producer");
        Kafka { cluster, producer }
    }

    /// Produces one message and waits until the cluster has it.
    fn produce(&self, topic: &str, payload: &[u8]) {
        self.producer.send(BaseRecord::<(), [u8]>::to(topic).payload(payload)).expect("produce");
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// The misp section. The mock cluster's group coordinator keeps a
    /// member that left until its session times out, so the session is
    /// short (its minimum) for the restart test.
    fn misp_yaml(&self, topics: &str, group: &str) -> String {
        format!(
            "kafka:\n  topics: [{topics}]\n  poll_interval: 0.5\n  config:\n    bootstrap.servers: \"{}\"\n    group.id: {group}\n    auto.offset.reset: earliest\n    session.timeout.ms: 6000\n    heartbeat.interval.ms: 500",
            self.cluster.bootstrap_servers()
        )
    }
}

fn notification(n: u64) -> Vec<u8> {
    domain_notification(&uuid(TAG, n), &format!("k{n}.example"), "add", true).to_string().into_bytes()
}

#[test]
fn kafka_attributes_from_several_topics_become_indicators() {
    let kafka = Kafka::start(&["misp_attribute", "misp_attribute_2"]);
    let mut bus = start_bus(&kafka.misp_yaml("misp_attribute, misp_attribute_2", "tb-1"), &[]);
    bus.bus.wait_for("Receiving MISP attributes from Kafka");
    let c = bus.subscribe(json!("stix2/indicator"), 0);
    bus.publisher().sync(&[&c]);

    kafka.produce("misp_attribute", b"{\"Attribute\": ");
    kafka.produce("misp_attribute", b"[1, 2, 3]");
    kafka.produce("misp_attribute", b"");
    kafka.produce("misp_attribute", &notification(1));
    kafka.produce("misp_attribute_2", &notification(2));
    kafka.produce("misp_attribute", &notification(3));
    let mut got = HashSet::new();
    while got.len() < 3 {
        let d = c.recv_real();
        assert_eq!(d.kind, "indicator", "{d:?}");
        let v = d.value();
        assert!(got.insert(v["id"].as_str().unwrap().to_string()), "twice: {v}");
        assert!(v["pattern"].as_str().unwrap().starts_with("[domain-name:value = 'k"), "{v}");
    }
    let want: HashSet<String> = (1..=3).map(|n| format!("indicator--{}", uuid(TAG, n))).collect();
    assert_eq!(got, want);
    bus.bus.wait_for_count("Skipping a MISP attribute from Kafka", 3);
    assert!(bus.bus.terminate().success());
}

#[test]
fn committed_offsets_carry_over_a_restart() {
    let kafka = Kafka::start(&["misp_attribute"]);
    let yaml = kafka.misp_yaml("misp_attribute", "tb-restart");
    let id = |n: u64| format!("indicator--{}", uuid(TAG, 100 + n));
    let produce = |n: u64| {
        kafka.produce(
            "misp_attribute",
            &domain_notification(&uuid(TAG, 100 + n), "r.example", "add", true).to_string().into_bytes(),
        )
    };

    // The bus logs every indicator it takes from MISP (debug), which shows
    // what was consumed whether or not an app was connected yet.
    let mut bus = start_bus(&yaml, &[]);
    produce(1);
    bus.bus.wait_for(&id(1));
    assert!(bus.bus.terminate().success());
    assert!(!bus.bus.log().contains("cannot commit"), "{}", bus.bus.log());

    // Published while the bus is down: consumed after it starts, and the
    // message consumed before is not consumed again.
    produce(2);
    let mut bus = start_bus(&yaml, &[]);
    bus.bus.wait_for(&id(2));
    produce(3);
    bus.bus.wait_for(&id(3));
    assert!(bus.bus.terminate().success());
    let log = bus.bus.log();
    assert!(!log.contains(&id(1)), "consumed twice:\n{log}");
    assert_eq!(log.matches(&format!("\"id\": \"{}\"", id(2))).count(), 1, "{log}");
}
