//! Consumer: reads this host's queue, decodes every delivery by its `type`
//! field, and routes it by topic prefix to the subscribed queues. A
//! delivery is acknowledged only after it was handed to every subscriber;
//! undecodable ones are logged and rejected without requeueing.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Connection};
use threatbus_plugin_api::logging::excerpt;
use threatbus_plugin_api::Message;
use threatbus_routing as routing;
use tokio::sync::mpsc;

use crate::util::{connect, connection_error, declare_topology, shutdown_requested, Backoff, Shutdown};
use crate::Shared;

/// A decoded delivery on its way to the provisioner thread.
pub type Decoded = (Message, Acker);

/// Runs on its own thread: delivering into a full subscriber queue may
/// block, which must not stall the AMQP connection (heartbeats, confirms).
pub fn provisioner(mut rx: mpsc::UnboundedReceiver<Decoded>, acks: mpsc::UnboundedSender<Acker>, shared: Arc<Shared>) {
    let mut scratch = Vec::new();
    while let Some((msg, acker)) = rx.blocking_recv() {
        if shared.stopping.load(Ordering::SeqCst) {
            // The apps are gone; left unacknowledged, the message stays in
            // the queue (returned when the channel closes).
            continue;
        }
        routing::provision(&shared.subs, &msg, &shared.stopping, &mut scratch);
        shared.stats.consumed.inc();
        log::debug!("Relayed message from RabbitMQ: {msg:?}");
        let _ = acks.send(acker);
    }
}

/// The consumer task.
pub async fn run(
    shared: Arc<Shared>,
    decoded: mpsc::UnboundedSender<Decoded>,
    mut acks: mpsc::UnboundedReceiver<Acker>,
    mut shutdown: Shutdown,
) {
    let cfg = &shared.cfg;
    let mut backoff = Backoff::new(cfg.reconnect_delay(), cfg.reconnect_max_delay());
    let mut failures = 0u64;
    let mut sessions = 0u64;
    while shutdown.borrow().is_none() {
        log::debug!("RabbitMQ consumer: connecting to {}...", cfg.endpoint());
        let conn = tokio::select! {
            r = connect(&shared, "consumer") => r,
            _ = shutdown_requested(&mut shutdown) => break,
        };
        let err = match conn {
            Ok(conn) => {
                shared.stats.connects.inc();
                sessions += 1;
                match session(&shared, &conn, &decoded, &mut acks, &mut shutdown, &mut backoff, &mut failures, sessions)
                    .await
                {
                    Ok(()) => break,
                    Err(e) => {
                        let _ =
                            tokio::time::timeout(Duration::from_millis(200), conn.close(320, "reconnecting".into()))
                                .await;
                        e
                    }
                }
            }
            Err(e) => e,
        };
        failures += 1;
        shared.stats.reconnects.inc();
        let delay = backoff.next_delay();
        if failures == 1 {
            log::warn!("RabbitMQ consumer: connection failed or lost: {err}; reconnecting in {delay:?}");
        } else {
            log::debug!("RabbitMQ consumer: connection attempt {failures} failed: {err}; retrying in {delay:?}");
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown_requested(&mut shutdown) => break,
        }
    }
    log::debug!("RabbitMQ consumer stopped");
}

#[allow(clippy::too_many_arguments)]
async fn session(
    shared: &Shared,
    conn: &Connection,
    decoded: &mpsc::UnboundedSender<Decoded>,
    acks: &mut mpsc::UnboundedReceiver<Acker>,
    shutdown: &mut Shutdown,
    backoff: &mut Backoff,
    failures: &mut u64,
    sessions: u64,
) -> lapin::Result<()> {
    let cfg = &shared.cfg;
    let mut events = Box::pin(conn.events_listener());
    let ch = conn.create_channel().await?;
    declare_topology(&ch, shared, true).await?;
    ch.basic_qos(cfg.prefetch, BasicQosOptions::default()).await?;
    let mut consumer = ch
        .basic_consume(
            shared.queue_name.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    backoff.reset();
    if sessions > 1 || *failures > 0 {
        log::info!(
            "RabbitMQ consumer: reconnected to {} after {} failed attempts; consuming from queue '{}'",
            cfg.endpoint(),
            failures,
            shared.queue_name
        );
    } else {
        log::info!(
            "RabbitMQ consumer: consuming from queue '{}' bound to exchange '{}' at {}",
            shared.queue_name,
            cfg.exchange_name,
            cfg.endpoint()
        );
    }
    *failures = 0;
    loop {
        tokio::select! {
            d = consumer.next() => match d {
                Some(Ok(delivery)) => handle(shared, delivery, decoded).await,
                Some(Err(e)) => return Err(e),
                None => {
                    return Err(lapin::Error::from(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the broker cancelled the consumer",
                    )))
                }
            },
            Some(acker) = acks.recv() => {
                // The provisioner handles deliveries in order, so acknowledging
                // the latest one with `multiple` covers all before it.
                let mut last = acker;
                while let Ok(a) = acks.try_recv() {
                    last = a;
                }
                if let Err(e) = last.ack(BasicAckOptions { multiple: true }).await {
                    log::debug!("RabbitMQ consumer: ack failed (the message will be redelivered): {e}");
                }
            },
            e = connection_error(&mut events) => return Err(e),
            _ = shutdown_requested(shutdown) => {
                // Unacknowledged deliveries go back to the queue when the
                // channel closes; with a durable queue the next start gets them.
                let limit = Duration::from_secs(1);
                let _ = tokio::time::timeout(limit, ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())).await;
                let _ = tokio::time::timeout(limit, ch.close(200, "OK".into())).await;
                match tokio::time::timeout(limit, conn.close(200, "OK".into())).await {
                    Ok(Ok(())) => log::info!("RabbitMQ consumer: connection closed"),
                    Ok(Err(e)) => log::debug!("RabbitMQ consumer: closing the connection: {e}"),
                    Err(_) => log::warn!("RabbitMQ consumer: the broker did not answer connection.close in time"),
                }
                return Ok(());
            }
        }
    }
}

/// Decodes one delivery; rejects (without requeue) what cannot be decoded.
async fn handle(shared: &Shared, delivery: Delivery, decoded: &mpsc::UnboundedSender<Decoded>) {
    let parsed = std::str::from_utf8(&delivery.data).map_err(|e| format!("body is not UTF-8: {e}")).and_then(|s| {
        // The body comes from the network; the host validates it (and turns
        // a panic of its validator into an error).
        shared.host.parse_any(s)
    });
    match parsed {
        Ok(msg) => {
            // If the provisioner is gone (shutdown), the delivery stays
            // unacknowledged and returns to the queue.
            let _ = decoded.send((msg, delivery.acker));
        }
        Err(e) => {
            shared.stats.rejected.inc();
            log::error!(
                "RabbitMQ consumer: rejected undecodable message from queue '{}': {e}; body: {}",
                shared.queue_name,
                excerpt(&delivery.data)
            );
            if let Err(e) = delivery.acker.reject(BasicRejectOptions { requeue: false }).await {
                log::debug!("RabbitMQ consumer: reject failed: {e}");
            }
        }
    }
}
