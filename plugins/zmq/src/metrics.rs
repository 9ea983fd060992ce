//! The zmq app's own metrics, reported to the host (ABI 1.1): what left
//! through the pub port, what was discarded unsent, how many subscriptions
//! exist. The host counts what the bus delivered into each subscription's
//! queue and what a full queue dropped.

use threatbus_plugin_api::{Counter, Gauge, Host};

/// Handles to the plugin's metrics; cheap to copy into every subscription.
#[derive(Clone, Copy, Debug)]
pub struct ZmqMetrics {
    /// Frames handed to ZeroMQ for apps.
    pub sent: Counter,
    /// Messages queued for a subscription that ended (unsubscribed, expired
    /// or stopped) before they could be sent.
    pub discarded: Counter,
    /// Subscriptions handed out and not ended.
    pub subscriptions: Gauge,
    /// Subscribe requests refused because `max_subscriptions` was reached.
    pub refused: Counter,
}

impl ZmqMetrics {
    /// Registers the metrics with the host.
    pub fn register(host: &Host) -> ZmqMetrics {
        ZmqMetrics {
            sent: host.counter("zmq_frames_sent", "Frames the zmq app handed to ZeroMQ for subscribed apps", &[]),
            discarded: host.counter(
                "zmq_messages_discarded",
                "Messages queued for a zmq subscription that ended (unsubscribed, expired, stopped) before they were sent",
                &[],
            ),
            subscriptions: host.gauge("zmq_subscriptions", "Subscriptions the zmq app handed out that have not ended", &[]),
            refused: host.counter(
                "zmq_subscriptions_refused",
                "Subscribe requests refused because max_subscriptions was reached",
                &[],
            ),
        }
    }

    /// Metrics nobody reads (unit tests).
    #[cfg(test)]
    pub fn detached() -> ZmqMetrics {
        ZmqMetrics {
            sent: Counter::detached(),
            discarded: Counter::detached(),
            subscriptions: Gauge::detached(),
            refused: Counter::detached(),
        }
    }
}
