//! Publisher: every message taken from `inq` is published to the fanout
//! exchange and kept until the broker confirmed it. Unconfirmed messages
//! (connection lost, nack, unroutable) are published again, in their
//! original order, after the next (re)connect.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use threatbus_plugin_api::{Message, Queue};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::util::{connect, connection_error, declare_topology, shutdown_requested, Backoff, Shutdown};
use crate::Shared;

/// Moves messages from the blocking `inq` into the runtime. Ends when `inq`
/// is closed and drained, or when the publisher is gone (shutdown timeout);
/// then it counts what it could not hand over.
pub fn forward_inq(inq: Queue, tx: mpsc::Sender<Message>, shared: Arc<Shared>) {
    let mut batch = Vec::with_capacity(256);
    loop {
        batch.clear();
        if !inq.recv_batch(&mut batch, 256, None) {
            return;
        }
        for i in 0..batch.len() {
            if tx.blocking_send(batch[i].clone()).is_err() {
                let mut lost = batch.len() - i;
                while inq.try_recv().is_some() {
                    lost += 1;
                }
                log::error!(
                    "RabbitMQ publisher: stopped before it could publish {lost} more messages from the inbound queue; \
                     they are lost"
                );
                return;
            }
            shared.stats.taken.inc();
        }
    }
}

type ConfirmFuture = Pin<Box<dyn Future<Output = (u64, lapin::Result<Confirmation>)> + Send>>;

/// Messages not yet confirmed, by sequence number (= order taken from inq).
struct State {
    /// Waiting to be published (again), in order.
    pending: BTreeMap<u64, Message>,
    /// Published on the current channel, waiting for the confirm.
    inflight: HashMap<u64, Message>,
    next_seq: u64,
    input_closed: bool,
    republish_from: u64,
}

impl State {
    fn done(&self) -> bool {
        self.input_closed && self.pending.is_empty() && self.inflight.is_empty()
    }

    fn unconfirmed(&self) -> usize {
        self.pending.len() + self.inflight.len()
    }

    /// After a lost channel: everything in flight is published again.
    fn requeue_inflight(&mut self) {
        self.pending.extend(self.inflight.drain());
    }

    fn push_new(&mut self, msg: Message) {
        self.pending.insert(self.next_seq, msg);
        self.next_seq += 1;
    }
}

enum End {
    /// Input closed and everything confirmed.
    Done,
    /// The shutdown deadline passed.
    Deadline,
}

/// Waits until the shutdown deadline (never, while not shutting down).
async fn deadline(shutdown: &mut Shutdown) {
    let current = *shutdown.borrow();
    let at = match current {
        Some(at) => at,
        None => match shutdown.wait_for(|s| s.is_some()).await {
            Ok(v) => v.expect("checked by wait_for"),
            // The backbone object is gone without stop(): finish at once.
            Err(_) => std::time::Instant::now(),
        },
    };
    tokio::time::sleep_until(Instant::from_std(at)).await
}

fn shutting_down(shutdown: &Shutdown) -> bool {
    shutdown.borrow().is_some()
}

/// The publisher task.
pub async fn run(shared: Arc<Shared>, mut rx: mpsc::Receiver<Message>, mut shutdown: Shutdown) {
    let cfg = &shared.cfg;
    let mut st = State {
        pending: BTreeMap::new(),
        inflight: HashMap::new(),
        next_seq: 0,
        input_closed: false,
        republish_from: 0,
    };
    let mut backoff = Backoff::new(cfg.reconnect_delay(), cfg.reconnect_max_delay());
    let mut failures = 0u64;
    let mut sessions = 0u64;
    let end = loop {
        if st.done() {
            break End::Done;
        }
        // While disconnected, messages stay in inq (bounded by the host);
        // at shutdown notice a closed, empty input without a connection.
        if shutting_down(&shutdown) && st.pending.is_empty() && rx.is_closed() && rx.is_empty() {
            st.input_closed = true;
            continue;
        }
        log::debug!("RabbitMQ publisher: connecting to {}...", cfg.endpoint());
        let conn = tokio::select! {
            r = connect(&shared, "publisher") => r,
            _ = deadline(&mut shutdown) => break End::Deadline,
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                let delay = backoff.next_delay();
                if failures == 1 {
                    log::warn!(
                        "RabbitMQ publisher: connection to {} failed to open: {e}; retrying with backoff, first in {delay:?}",
                        cfg.endpoint()
                    );
                } else {
                    log::debug!("RabbitMQ publisher: connection attempt {failures} failed: {e}; retrying in {delay:?}");
                }
                let was_shutting_down = shutting_down(&shutdown);
                let mut wake = shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = deadline(&mut shutdown) => break End::Deadline,
                    // wake up early to notice a closed, empty input at shutdown
                    _ = shutdown_requested(&mut wake), if !was_shutting_down => {}
                }
                continue;
            }
        };
        shared.stats.connects.inc();
        sessions += 1;
        let res = session(&shared, &conn, &mut st, &mut rx, &mut shutdown, &mut backoff, &mut failures, sessions).await;
        st.requeue_inflight();
        match res {
            Ok(end) => {
                close(&conn).await;
                break end;
            }
            Err(e) => {
                let delay = backoff.next_delay();
                log::warn!(
                    "RabbitMQ publisher: connection lost: {e}; {} unconfirmed messages will be published again; \
                     reconnecting in {delay:?}",
                    st.unconfirmed()
                );
                shared.stats.reconnects.inc();
                // `republish_from` marks what was already sent once.
                st.republish_from = st.next_seq;
                let _ = tokio::time::timeout(Duration::from_millis(200), conn.close(320, "reconnecting".into())).await;
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = deadline(&mut shutdown) => break End::Deadline,
                }
            }
        }
    };
    match end {
        End::Done => log::debug!("RabbitMQ publisher: every message taken from inq was confirmed"),
        End::Deadline => {
            let mut lost = st.unconfirmed();
            rx.close();
            while rx.try_recv().is_ok() {
                lost += 1;
            }
            if lost > 0 {
                log::error!(
                    "RabbitMQ publisher: shutdown timeout ({:?}): {lost} messages taken from inq were not confirmed \
                     by the broker and may be lost",
                    cfg.shutdown_timeout()
                );
            }
        }
    }
}

async fn close(conn: &Connection) {
    match tokio::time::timeout(Duration::from_secs(1), conn.close(200, "OK".into())).await {
        Ok(Ok(())) => log::info!("RabbitMQ publisher: connection closed"),
        Ok(Err(e)) => log::debug!("RabbitMQ publisher: closing the connection: {e}"),
        Err(_) => log::warn!("RabbitMQ publisher: the broker did not answer connection.close in time"),
    }
}

/// Publishes over one connection until the input is done, the deadline
/// passes, or the connection fails.
#[allow(clippy::too_many_arguments)]
async fn session(
    shared: &Shared,
    conn: &Connection,
    st: &mut State,
    rx: &mut mpsc::Receiver<Message>,
    shutdown: &mut Shutdown,
    backoff: &mut Backoff,
    failures: &mut u64,
    sessions: u64,
) -> lapin::Result<End> {
    let cfg = &shared.cfg;
    let mut events = Box::pin(conn.events_listener());
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    // Our own queue and binding too (unless exclusive to the consumer's
    // connection), so that nothing published after a broker restart is
    // unroutable for this host while its consumer is still reconnecting.
    declare_topology(&ch, shared, !cfg.queue.exclusive).await?;
    backoff.reset();
    if *failures > 0 || sessions > 1 {
        log::info!("RabbitMQ publisher: reconnected to {} after {} failed attempts", cfg.endpoint(), failures);
    } else {
        log::info!("RabbitMQ publisher: connected to {}", cfg.endpoint());
    }
    *failures = 0;
    let again = st.pending.range(..st.republish_from).count();
    if again > 0 {
        log::warn!("RabbitMQ publisher: publishing {again} unconfirmed messages again");
    }

    let props =
        if cfg.persistent() { BasicProperties::default().with_delivery_mode(2) } else { BasicProperties::default() };
    let window = usize::from(cfg.max_unconfirmed);
    let mut confirms: FuturesUnordered<ConfirmFuture> = FuturesUnordered::new();
    let mut retry = Backoff::new(cfg.reconnect_delay(), cfg.reconnect_max_delay());
    let mut redeclare = false;
    loop {
        if redeclare {
            // A nack or an unroutable message: wait a little, make sure our
            // queue is (still) bound, and try again.
            tokio::select! {
                _ = tokio::time::sleep(retry.next_delay()) => {}
                _ = deadline(shutdown) => return Ok(End::Deadline),
            }
            declare_topology(&ch, shared, !cfg.queue.exclusive).await?;
            redeclare = false;
        }
        // Fill the window: first what waits for a (re)publish, then new input.
        while st.inflight.len() < window {
            if st.pending.is_empty() && !st.input_closed {
                match rx.try_recv() {
                    Ok(m) => st.push_new(m),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        st.input_closed = true;
                        break;
                    }
                }
            }
            let Some((seq, msg)) = st.pending.pop_first() else { break };
            let confirm = publish(&ch, shared, &msg, props.clone()).await;
            shared.stats.published.inc();
            if seq < st.republish_from {
                shared.stats.republished.inc();
            }
            match confirm {
                Ok(c) => {
                    st.inflight.insert(seq, msg);
                    confirms.push(Box::pin(async move { (seq, c.await) }));
                }
                Err(e) => {
                    st.pending.insert(seq, msg);
                    return Err(e);
                }
            }
        }
        if st.done() {
            let _ = tokio::time::timeout(Duration::from_secs(1), ch.close(200, "OK".into())).await;
            return Ok(End::Done);
        }
        let can_take = !st.input_closed && st.pending.is_empty() && st.inflight.len() < window;
        tokio::select! {
            Some((seq, res)) = confirms.next(), if !confirms.is_empty() => {
                let Some(msg) = st.inflight.remove(&seq) else { continue };
                match res {
                    Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                        shared.stats.confirmed.inc();
                        log::debug!("RabbitMQ publisher: forwarded message to RabbitMQ: {msg:?}");
                        retry.reset();
                    }
                    Ok(Confirmation::Ack(Some(ret))) => {
                        log::warn!(
                            "RabbitMQ publisher: message was unroutable ({} {}); publishing it again",
                            ret.reply_code, ret.reply_text
                        );
                        st.pending.insert(seq, msg);
                        redeclare = true;
                    }
                    Ok(Confirmation::Nack(_)) => {
                        log::warn!("RabbitMQ publisher: the broker nacked a message; publishing it again");
                        st.pending.insert(seq, msg);
                        redeclare = true;
                    }
                    Err(e) => {
                        st.pending.insert(seq, msg);
                        return Err(e);
                    }
                }
            }
            m = rx.recv(), if can_take => match m {
                Some(m) => st.push_new(m),
                None => st.input_closed = true,
            },
            e = connection_error(&mut events) => return Err(e),
            _ = deadline(shutdown) => return Ok(End::Deadline),
        }
    }
}

async fn publish(
    ch: &Channel,
    shared: &Shared,
    msg: &Message,
    props: BasicProperties,
) -> lapin::Result<lapin::PublisherConfirm> {
    ch.basic_publish(
        shared.cfg.exchange_name.as_str().into(),
        "".into(),
        // mandatory: an unroutable message comes back instead of vanishing.
        BasicPublishOptions { mandatory: true, immediate: false },
        msg.json().as_bytes(),
        props,
    )
    .await
}
