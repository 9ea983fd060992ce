//! The Kafka intake (a thread): a consumer in the configured group,
//! subscribed to the configured topics; each message value is one MISP
//! attribute notification (MISP's `Plugin.Kafka_attribute_notifications_topic`).
//!
//! The plugin stores a message's offset only after the message was handled
//! (so `enable.auto.offset.store` is always false); librdkafka commits
//! stored offsets as usual (`enable.auto.commit`, on by default), and the
//! plugin commits once more, synchronously, when it stops. A restarted bus
//! continues where it left off: messages published while it was down are
//! consumed after it starts, none twice, and none lost at a stop.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message as _;

use crate::config::Kafka;
use crate::intake::{Flow, Intake};
use threatbus_http::Stopper;

/// Creates the consumer and subscribes it (so that configuration errors
/// surface at start, naming the property).
pub fn connect(cfg: &Kafka) -> Result<BaseConsumer, String> {
    let mut client = ClientConfig::new();
    for (k, v) in &cfg.config {
        client.set(k, &v.0);
    }
    client.set("enable.auto.offset.store", "false");
    let consumer: BaseConsumer = client.create().map_err(|e| format!("kafka.config: {e}"))?;
    let topics: Vec<&str> = cfg.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| format!("kafka.topics: {e}"))?;
    let servers = cfg.config.get("bootstrap.servers").map(|s| s.0.as_str()).unwrap_or("?");
    log::info!("Receiving MISP attributes from Kafka at {servers}, topics {}", topics.join(", "));
    Ok(consumer)
}

/// Consumes until the plugin stops, then commits the consumed offsets.
pub fn run(consumer: BaseConsumer, poll_interval: Duration, mut intake: Intake, stop: &Stopper) {
    // Short polls, so that a stop is seen quickly whatever the interval.
    let poll = poll_interval.min(Duration::from_millis(200));
    let mut consumed = false;
    while !stop.is_stopped() {
        let msg = match consumer.poll(poll) {
            None => continue,
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                log::error!("Kafka error: {e}");
                continue;
            }
        };
        consumed = true;
        let payload = msg.payload().unwrap_or_default();
        if intake.handle(payload) == Flow::Stop {
            break;
        }
        if let Err(e) = consumer.store_offset_from_message(&msg) {
            log::warn!("Kafka: cannot store the offset of {} partition {}: {e}", msg.topic(), msg.partition());
        }
    }
    if consumed {
        if let Err(e) = consumer.commit_consumer_state(CommitMode::Sync) {
            log::warn!("Kafka: cannot commit the consumed offsets at stop: {e}");
        }
    }
    // Leaving the group before the handle is dropped hands the partitions
    // to other members at once.
    consumer.unsubscribe();
}
