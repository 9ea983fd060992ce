//! Connection set-up shared by the publisher and the consumer: connecting,
//! declaring the topology, backoff.

use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Event, ExchangeKind};
use tokio::sync::watch;

use crate::Shared;

/// Exponential backoff between `min` and `max`.
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { min, max, next: min }
    }

    /// The delay before the next attempt; doubles up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to `min` after a successful connection.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Opens a connection named after this host's queue and `role`.
pub async fn connect(shared: &Shared, role: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default()
        .with_connection_name(format!("threatbus {role} ({})", shared.queue_name).into())
        .with_client_property("product".into(), "threatbus (Rust)".into())
        .with_client_property("version".into(), env!("CARGO_PKG_VERSION").into());
    let tls = shared.cfg.tls_config().map_err(|e| lapin::Error::from(std::io::Error::other(e)))?;
    let runtime = lapin::runtime::default_runtime()?;
    let conn = Connection::connect_uri_with_config(shared.cfg.uri(), props, tls, runtime);
    // The URI's connection_timeout covers TCP; this also bounds the AMQP
    // handshake with a broker that accepts but does not answer.
    let limit = Duration::from_secs_f64(shared.cfg.connect_timeout) + Duration::from_secs(1);
    match tokio::time::timeout(limit, conn).await {
        Ok(r) => r,
        Err(_) => Err(lapin::Error::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no AMQP handshake within {limit:?}"),
        ))),
    }
}

/// Declares the fanout exchange with pika's defaults (non-durable unless
/// `exchange_durable`), and with `with_queue` this host's queue and its
/// binding, with the Python backbone's arguments.
pub async fn declare_topology(ch: &Channel, shared: &Shared, with_queue: bool) -> lapin::Result<()> {
    let cfg = &shared.cfg;
    ch.exchange_declare(
        cfg.exchange_name.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions { durable: cfg.exchange_durable, ..ExchangeDeclareOptions::default() },
        FieldTable::default(),
    )
    .await
    .map_err(|e| {
        log::error!(
            "RabbitMQ: cannot declare exchange '{}' (durable: {}): {e}. All hosts on one exchange must use the \
             same exchange_durable setting (Python hosts declare it non-durable).",
            cfg.exchange_name,
            cfg.exchange_durable
        );
        e
    })?;
    if with_queue {
        ch.queue_declare(
            shared.queue_name.as_str().into(),
            QueueDeclareOptions {
                durable: cfg.queue.durable,
                exclusive: cfg.queue.exclusive,
                auto_delete: cfg.queue.auto_delete,
                ..QueueDeclareOptions::default()
            },
            cfg.queue_arguments(),
        )
        .await
        .map_err(|e| {
            log::error!(
                "RabbitMQ: cannot declare queue '{}': {e}. An existing queue keeps the arguments it was created \
                 with; delete it or change queue.name_suffix.",
                shared.queue_name
            );
            e
        })?;
        ch.queue_bind(
            shared.queue_name.as_str().into(),
            cfg.exchange_name.as_str().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    }
    Ok(())
}

/// Resolves with the first connection error reported by lapin (e.g. the
/// broker closed the connection or missed heartbeats).
pub async fn connection_error(events: &mut (impl Stream<Item = Event> + Unpin)) -> lapin::Error {
    while let Some(ev) = events.next().await {
        match ev {
            Event::Error(e) => return e,
            Event::ConnectionBlocked(reason) => log::warn!("RabbitMQ blocked the connection: {reason}"),
            Event::ConnectionUnblocked => log::info!("RabbitMQ unblocked the connection"),
            _ => {}
        }
    }
    lapin::Error::from(std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "connection events ended"))
}

/// The shutdown signal: `None` while running, then the instant by which
/// the publisher must have finished (the consumer stops at once).
pub type Shutdown = watch::Receiver<Option<std::time::Instant>>;

/// Resolves when shutdown is requested (or the backbone object is gone).
pub async fn shutdown_requested(shutdown: &mut Shutdown) {
    let _ = shutdown.wait_for(|s| s.is_some()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(100));
        assert_eq!(b.next_delay(), Duration::from_millis(200));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        assert_eq!(b.next_delay(), Duration::from_millis(350));
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }
}
