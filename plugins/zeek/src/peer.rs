//! One peering with a Zeek (a task on the plugin's runtime): the Broker
//! handshake as the accepting side, then the exchange of events.

use std::sync::Arc;
use std::time::Duration;

use threatbus_plugin_api::{MessageKind, Overflow, Queue};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::events::{self, Event};
use crate::value::{self, Reader, Value};
use crate::wire::{ec, read_filter, EndpointId, Envelope, EnvelopeType, Handshake, PROTOCOL_VERSION, RESERVED_TOPIC};
use crate::Shared;

/// Topic of management events (both ways).
pub const MANAGE_TOPIC: &str = "threatbus/manage";
/// Topic of sightings from Zeek.
pub const SIGHTING_TOPIC: &str = "stix2/sighting";
/// Length of the random suffix of a p2p topic.
pub const P2P_SUFFIX_LEN: usize = 10;
/// Time a peer has to complete the handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The filter we advertise: what Zeek may send us (sorted, as Broker keeps it).
fn our_filter() -> Vec<String> {
    vec![SIGHTING_TOPIC.to_string(), MANAGE_TOPIC.to_string()]
}

/// Why a peering ended.
#[derive(Debug)]
pub enum End {
    /// The peer closed the connection.
    Closed,
    /// The plugin stops.
    Stopping,
    /// Bad input or an I/O error; the text says which.
    Error(String),
}

/// Reads one length-prefixed frame. The buffer grows as bytes arrive, so a
/// large length field alone allocates nothing.
async fn read_frame<S: AsyncRead + Unpin>(s: &mut S, max: usize) -> Result<Option<Vec<u8>>, String> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(format!("read error: {e}")),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(format!("frame of {len} bytes exceeds max_frame_size ({max})"));
    }
    let mut buf = Vec::with_capacity(len.min(64 * 1024));
    let n = (&mut *s).take(len as u64).read_to_end(&mut buf).await.map_err(|e| format!("read error: {e}"))?;
    if n < len {
        return Err(format!("truncated frame: {n} of {len} bytes before the connection closed"));
    }
    Ok(Some(buf))
}

async fn write_frame<S: AsyncWrite + Unpin>(s: &mut S, payload: &[u8]) -> Result<(), String> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    s.write_all(&frame).await.map_err(|e| format!("write error: {e}"))?;
    s.flush().await.map_err(|e| format!("write error: {e}"))
}

/// Sends `drop_conn` and returns the error to end with.
async fn drop_conn<S: AsyncWrite + Unpin>(s: &mut S, id: EndpointId, code: u8, why: String) -> String {
    let msg = Handshake::DropConn { id, code, description: why.clone() };
    let _ = write_frame(s, &msg.encode()).await;
    why
}

/// The next handshake message other than a probe.
async fn next_handshake<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, ours: EndpointId) -> Result<Handshake, String> {
    loop {
        let Some(frame) = read_frame(s, 64 * 1024).await? else {
            return Err("the peer closed the connection during the handshake".into());
        };
        match Handshake::decode(&frame) {
            Ok(Handshake::Probe) => continue,
            Ok(Handshake::DropConn { code, description, .. }) => {
                return Err(format!("the peer dropped the connection (code {code}): {description}"))
            }
            Ok(m) => return Ok(m),
            Err(crate::wire::WireError::WrongMagic(m)) => {
                let why = format!("wrong magic number {m:#010x}: not a Broker peer");
                return Err(drop_conn(s, ours, ec::WRONG_MAGIC_NUMBER, why).await);
            }
            Err(e) => return Err(drop_conn(s, ours, ec::LOGIC_ERROR, format!("invalid handshake message: {e}")).await),
        }
    }
}

/// Runs the handshake as the accepting side; returns the peer's id and
/// filter.
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    ours: EndpointId,
) -> Result<(EndpointId, Vec<String>), String> {
    write_frame(s, &Handshake::Probe.encode()).await?;
    let (theirs, min, max) = match next_handshake(s, ours).await? {
        Handshake::Hello { id, min_version, max_version } => (id, min_version, max_version),
        other => return Err(drop_conn(s, ours, ec::LOGIC_ERROR, format!("expected hello, got {other:?}")).await),
    };
    if !(min..=max).contains(&PROTOCOL_VERSION) {
        let why = format!("unsupported versions offered: {min}..{max} (this peer speaks {PROTOCOL_VERSION})");
        return Err(drop_conn(s, ours, ec::PEER_INCOMPATIBLE, why).await);
    }
    if theirs == ours {
        return Err(drop_conn(s, ours, ec::REDUNDANT_CONNECTION, "the peer has our endpoint id".into()).await);
    }
    let filter = if ours < theirs {
        // The smaller id originates.
        write_frame(s, &Handshake::VersionSelect { id: ours, version: PROTOCOL_VERSION }.encode()).await?;
        write_frame(s, &Handshake::OriginatorSyn { filter: our_filter() }.encode()).await?;
        let filter = match next_handshake(s, ours).await? {
            Handshake::ResponderSynAck { filter } => filter,
            other => {
                return Err(
                    drop_conn(s, ours, ec::LOGIC_ERROR, format!("expected responder_syn_ack, got {other:?}")).await
                )
            }
        };
        write_frame(s, &Handshake::OriginatorAck.encode()).await?;
        filter
    } else {
        write_frame(
            s,
            &Handshake::Hello { id: ours, min_version: PROTOCOL_VERSION, max_version: PROTOCOL_VERSION }.encode(),
        )
        .await?;
        match next_handshake(s, ours).await? {
            Handshake::VersionSelect { version, .. } if version == PROTOCOL_VERSION => {}
            other => {
                return Err(drop_conn(
                    s,
                    ours,
                    ec::PEER_INCOMPATIBLE,
                    format!("expected version 1 selected, got {other:?}"),
                )
                .await)
            }
        }
        let filter = match next_handshake(s, ours).await? {
            Handshake::OriginatorSyn { filter } => filter,
            other => {
                return Err(drop_conn(s, ours, ec::LOGIC_ERROR, format!("expected originator_syn, got {other:?}")).await)
            }
        };
        write_frame(s, &Handshake::ResponderSynAck { filter: our_filter() }.encode()).await?;
        match next_handshake(s, ours).await? {
            Handshake::OriginatorAck => {}
            other => {
                return Err(drop_conn(s, ours, ec::LOGIC_ERROR, format!("expected originator_ack, got {other:?}")).await)
            }
        }
        filter
    };
    Ok((theirs, filter))
}

/// Whether a peer's filter lets a message on `topic` through.
fn wants(filter: &[String], topic: &str) -> bool {
    filter.iter().any(|f| topic.starts_with(f.as_str()))
}

/// A p2p topic: the requested topic and 10 random lowercase letters from
/// the operating system's CSPRNG.
pub fn p2p_topic(topic: &str) -> String {
    format!("{topic}{}", threatbus_plugin_api::random::lowercase_letters(P2P_SUFFIX_LEN))
}

/// One subscription of a peer: its bus queue (closed when it ends).
struct Subscription {
    p2p: String,
    topic: String,
    queue: Queue,
}

/// The state of one established peering.
struct Peering {
    shared: Arc<Shared>,
    ours: EndpointId,
    theirs: EndpointId,
    filter: Vec<String>,
    outbound: mpsc::Sender<Envelope>,
    subscriptions: Vec<Subscription>,
    name: String,
}

impl Peering {
    fn envelope(&self, topic: &str, payload: Vec<u8>) -> Envelope {
        Envelope {
            sender: self.ours,
            receiver: crate::wire::NIL,
            kind: EnvelopeType::Data,
            ttl: crate::wire::DEFAULT_TTL,
            topic: topic.to_string(),
            payload,
        }
    }

    /// Handles one event from the peer.
    async fn event(&mut self, topic: &str, event: Event) -> Result<(), String> {
        let ns = &self.shared.cfg.module_namespace;
        let short = event.name.strip_prefix(&format!("{ns}::")).unwrap_or(&event.name);
        match (short, topic, event.args.as_slice()) {
            ("subscribe", MANAGE_TOPIC, [Value::String(t), Value::Timespan(ns_span)]) => {
                let topic = String::from_utf8(t.clone()).map_err(|_| "subscribe: topic is not UTF-8".to_string())?;
                self.subscribe(topic, ns_span.unsigned_abs()).await
            }
            ("unsubscribe", MANAGE_TOPIC, [Value::String(p2p)]) => {
                let p2p = String::from_utf8_lossy(p2p).into_owned();
                self.unsubscribe(&p2p).await;
                Ok(())
            }
            ("sighting", SIGHTING_TOPIC, [ts, id, context]) => {
                match events::sighting(ts, id, context) {
                    Ok(s) => self.publish(s.to_json()).await,
                    Err(e) => log::warn!("{}: dropped a sighting: {e}", self.name),
                }
                Ok(())
            }
            ("subscribe" | "unsubscribe" | "sighting", _, args) => {
                Err(format!("event {} with {} arguments of the wrong types on topic {topic}", event.name, args.len()))
            }
            _ => {
                log::debug!("{}: ignoring event {} on {topic}", self.name, event.name);
                Ok(())
            }
        }
    }

    async fn publish(&self, json: String) {
        let host = self.shared.host;
        let name = self.name.clone();
        let sent = tokio::task::spawn_blocking(move || {
            let msg = host.parse(MessageKind::SIGHTING, &json).map_err(|e| format!("invalid sighting: {e}"))?;
            host.inq().send_timeout(msg, Duration::from_secs(5)).map_err(|e| format!("not accepted: {e}"))
        })
        .await;
        match sent {
            Ok(Ok(())) => log::debug!("{name}: sighting forwarded"),
            Ok(Err(e)) => log::warn!("{name}: sighting dropped: {e}"),
            Err(e) => log::error!("{name}: sighting dropped: {e}"),
        }
    }

    async fn subscribe(&mut self, topic: String, snapshot_ns: u64) -> Result<(), String> {
        let p2p = p2p_topic(&topic);
        log::info!("{}: subscription to {topic} (snapshot {} s) as {p2p}", self.name, snapshot_ns / 1_000_000_000);
        let queue = Queue::bounded(self.shared.cfg.subscriber_queue_size, Overflow::DROP_NEWEST);
        let host = self.shared.host;
        let (t, q) = (topic.clone(), queue.clone());
        let snapshot = Duration::from_nanos(snapshot_ns);
        let subscribed = tokio::task::spawn_blocking(move || host.subscribe(&t, &q, snapshot))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        if let Err(e) = subscribed {
            log::error!("{}: subscription to {topic} failed: {e}", self.name);
            return Ok(());
        }
        crate::forwarder::start(self.shared.clone(), queue.clone(), p2p.clone(), self.ours, self.outbound.clone())
            .map_err(|e| format!("cannot start a forwarder: {e}"))?;
        self.subscriptions.push(Subscription { p2p: p2p.clone(), topic, queue });
        let ack = Event {
            name: format!("{}::subscription_acknowledged", self.shared.cfg.module_namespace),
            args: vec![Value::string(&p2p)],
        };
        let env = self.envelope(MANAGE_TOPIC, value::encode(&ack.to_value()));
        self.outbound.send(env).await.map_err(|_| "the connection is closing".to_string())
    }

    async fn unsubscribe(&mut self, p2p: &str) {
        let Some(pos) = self.subscriptions.iter().position(|s| s.p2p == p2p) else {
            log::warn!("{}: unsubscribe from unknown topic {p2p}", self.name);
            return;
        };
        let sub = self.subscriptions.remove(pos);
        self.end_subscription(sub).await;
    }

    async fn end_subscription(&self, sub: Subscription) {
        log::info!("{}: removing subscription {}", self.name, sub.p2p);
        let host = self.shared.host;
        let r = tokio::task::spawn_blocking(move || {
            let r = host.unsubscribe(&sub.topic, &sub.queue);
            sub.queue.close();
            r
        })
        .await;
        if let Ok(Err(e)) = r {
            log::warn!("{}: unsubscribing: {e}", self.name);
        }
    }

    /// Handles one phase-3 frame from the peer.
    async fn frame(&mut self, frame: &[u8]) -> Result<(), String> {
        let env = Envelope::decode(frame).map_err(|e| format!("invalid message: {e}"))?;
        match env.kind {
            EnvelopeType::Data => {
                if env.receiver != crate::wire::NIL && env.receiver != self.ours {
                    return Ok(());
                }
                if !wants(&our_filter(), &env.topic) {
                    log::debug!("{}: ignoring data on {}", self.name, env.topic);
                    return Ok(());
                }
                let v = value::decode(&env.payload).map_err(|e| format!("invalid data on {}: {e}", env.topic))?;
                match Event::from_value(&v) {
                    Some(event) => self.event(&env.topic, event).await,
                    None => {
                        log::debug!("{}: ignoring data that is no Zeek event on {}", self.name, env.topic);
                        Ok(())
                    }
                }
            }
            EnvelopeType::RoutingUpdate => {
                self.filter =
                    read_filter(&mut Reader::new(&env.payload)).map_err(|e| format!("invalid routing update: {e}"))?;
                log::debug!("{}: filter now {:?}", self.name, self.filter);
                Ok(())
            }
            EnvelopeType::Ping => {
                let pong = Envelope {
                    sender: self.ours,
                    receiver: self.theirs,
                    kind: EnvelopeType::Pong,
                    ttl: crate::wire::DEFAULT_TTL,
                    topic: RESERVED_TOPIC.to_string(),
                    payload: env.payload,
                };
                self.outbound.send(pong).await.map_err(|_| "the connection is closing".to_string())
            }
            EnvelopeType::Pong | EnvelopeType::Command => Ok(()),
        }
    }
}

/// Runs one peering on an accepted (and, with TLS, established) stream
/// until it ends; cleans up its subscriptions.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    shared: Arc<Shared>,
    name: String,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> End {
    let ours = shared.endpoint_id;
    let shaken = tokio::select! {
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, ours)) => r,
        _ = shutdown.changed() => return End::Stopping,
    };
    let (theirs, filter) = match shaken {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => {
            log::warn!("Zeek peer {name}: closing the connection: handshake failed: {e}");
            return End::Error(e);
        }
        Err(_) => {
            log::warn!("Zeek peer {name}: closing the connection: no handshake within {HANDSHAKE_TIMEOUT:?}");
            return End::Error("handshake timeout".into());
        }
    };
    let id = uuid_text(&theirs);
    let name = format!("{name} (endpoint {id})");
    log::info!("Zeek peer {name} connected; it subscribed to {filter:?}");
    let (tx, mut rx) = mpsc::channel::<Envelope>(1024);
    let mut peering =
        Peering { shared: shared.clone(), ours, theirs, filter, outbound: tx, subscriptions: Vec::new(), name };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let max = shared.cfg.max_frame_size;
    let end = loop {
        tokio::select! {
            frame = read_frame(&mut reader, max) => match frame {
                Ok(Some(f)) => {
                    if let Err(e) = peering.frame(&f).await {
                        break End::Error(e);
                    }
                }
                Ok(None) => break End::Closed,
                Err(e) => break End::Error(e),
            },
            Some(env) = rx.recv() => {
                // Data goes out when the peer's filter wants it, and always on
                // its own p2p topics: snapshot results may come before the
                // routing update that adds the topic to its filter.
                let own = peering.subscriptions.iter().any(|s| s.p2p == env.topic);
                if env.kind == EnvelopeType::Data && !own && !wants(&peering.filter, &env.topic) {
                    continue;
                }
                if let Err(e) = write_frame(&mut writer, &env.encode()).await {
                    break End::Error(e);
                }
            }
            _ = shutdown.changed() => break End::Stopping,
        }
    };
    for sub in std::mem::take(&mut peering.subscriptions) {
        peering.end_subscription(sub).await;
    }
    let _ = writer.shutdown().await;
    match &end {
        End::Closed => log::info!("Zeek peer {} disconnected", peering.name),
        End::Stopping => log::debug!("Zeek peer {}: stopping", peering.name),
        End::Error(e) => log::warn!("Zeek peer {}: closing the connection: {e}", peering.name),
    }
    end
}

/// An endpoint id as a UUID string.
pub fn uuid_text(id: &EndpointId) -> String {
    let h: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
