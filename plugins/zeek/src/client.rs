//! The connecting side of a Broker peering, as a Zeek behaves (blocking
//! I/O on any stream: TCP or TLS). The plugin itself only accepts; this is
//! for tools and tests that play Zeek against it.

use std::io::{Read, Write};

use crate::events::Event;
use crate::value::{self, Value};
use crate::wire::{put_filter, EndpointId, Envelope, EnvelopeType, Handshake, DEFAULT_TTL, NIL, RESERVED_TOPIC};

/// A byte stream a peering runs on.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// Writes one length-prefixed frame.
pub fn write_frame(s: &mut dyn Stream, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    s.write_all(&frame)?;
    s.flush()
}

/// Reads one frame of at most `max` bytes; `None` once the stream ends.
pub fn read_frame(s: &mut dyn Stream, max: usize) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::other(format!("frame of {len} bytes")));
    }
    let mut buf = Vec::new();
    s.take(len as u64).read_to_end(&mut buf)?;
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(buf))
}

fn protocol_error(what: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// A peering as Zeek holds it.
pub struct Client {
    /// The stream of the peering.
    pub stream: Box<dyn Stream>,
    /// Our (Zeek's) endpoint id.
    pub id: EndpointId,
    /// The bus's endpoint id.
    pub bus_id: EndpointId,
    /// The filter the bus advertised.
    pub bus_filter: Vec<String>,
    /// The events' module, e.g. `Tenzir`.
    pub namespace: String,
}

impl Client {
    fn handshake_msg(s: &mut dyn Stream) -> std::io::Result<Handshake> {
        let frame = read_frame(s, 1 << 16)?.ok_or_else(|| protocol_error("closed during the handshake"))?;
        Handshake::decode(&frame).map_err(protocol_error)
    }

    /// Peers as Zeek does (hello, then whichever role the ids decide),
    /// advertising `filter`.
    pub fn peer(
        mut stream: Box<dyn Stream>,
        id: EndpointId,
        filter: &[&str],
        namespace: &str,
    ) -> std::io::Result<Client> {
        let filter: Vec<String> = filter.iter().map(|s| s.to_string()).collect();
        let s = stream.as_mut();
        let mut first = Self::handshake_msg(s)?;
        if first == Handshake::Probe {
            write_frame(s, &Handshake::Hello { id, min_version: 1, max_version: 1 }.encode())?;
            first = Self::handshake_msg(s)?;
        }
        let (bus_id, bus_filter) = match first {
            Handshake::Hello { id: bus_id, .. } => {
                write_frame(s, &Handshake::VersionSelect { id, version: 1 }.encode())?;
                write_frame(s, &Handshake::OriginatorSyn { filter: filter.clone() }.encode())?;
                match Self::handshake_msg(s)? {
                    Handshake::ResponderSynAck { filter: f } => {
                        write_frame(s, &Handshake::OriginatorAck.encode())?;
                        (bus_id, f)
                    }
                    other => return Err(protocol_error(format!("expected responder_syn_ack, got {other:?}"))),
                }
            }
            Handshake::VersionSelect { id: bus_id, .. } => match Self::handshake_msg(s)? {
                Handshake::OriginatorSyn { filter: f } => {
                    write_frame(s, &Handshake::ResponderSynAck { filter: filter.clone() }.encode())?;
                    match Self::handshake_msg(s)? {
                        Handshake::OriginatorAck => (bus_id, f),
                        other => return Err(protocol_error(format!("expected originator_ack, got {other:?}"))),
                    }
                }
                other => return Err(protocol_error(format!("expected originator_syn, got {other:?}"))),
            },
            other => return Err(protocol_error(format!("unexpected handshake message {other:?}"))),
        };
        Ok(Client { stream, id, bus_id, bus_filter, namespace: namespace.to_string() })
    }

    /// Sends one envelope.
    pub fn send_envelope(&mut self, env: &Envelope) -> std::io::Result<()> {
        write_frame(self.stream.as_mut(), &env.encode())
    }

    /// Publishes `<namespace>::<name>(args)` on `topic`.
    pub fn send_event(&mut self, topic: &str, name: &str, args: Vec<Value>) -> std::io::Result<()> {
        let event = Event { name: format!("{}::{name}", self.namespace), args };
        let env = Envelope {
            sender: self.id,
            receiver: NIL,
            kind: EnvelopeType::Data,
            ttl: DEFAULT_TTL,
            topic: topic.to_string(),
            payload: value::encode(&event.to_value()),
        };
        self.send_envelope(&env)
    }

    /// Tells the bus our new subscription filter.
    pub fn send_routing_update(&mut self, filter: &[&str]) -> std::io::Result<()> {
        let mut payload = Vec::new();
        let filter: Vec<String> = filter.iter().map(|s| s.to_string()).collect();
        put_filter(&mut payload, &filter);
        let env = Envelope {
            sender: self.id,
            receiver: self.bus_id,
            kind: EnvelopeType::RoutingUpdate,
            ttl: DEFAULT_TTL,
            topic: RESERVED_TOPIC.into(),
            payload,
        };
        self.send_envelope(&env)
    }

    /// The next envelope; `None` once the bus closed the connection.
    pub fn recv(&mut self) -> std::io::Result<Option<Envelope>> {
        match read_frame(self.stream.as_mut(), 1 << 24)? {
            Some(frame) => Envelope::decode(&frame).map(Some).map_err(protocol_error),
            None => Ok(None),
        }
    }

    /// The next data message as (topic, event).
    pub fn recv_event(&mut self) -> std::io::Result<(String, Event)> {
        loop {
            let env = self.recv()?.ok_or_else(|| protocol_error("the bus closed the connection"))?;
            if env.kind != EnvelopeType::Data {
                continue;
            }
            let v = value::decode(&env.payload).map_err(protocol_error)?;
            let event = Event::from_value(&v).ok_or_else(|| protocol_error("data that is no Zeek event"))?;
            return Ok((env.topic, event));
        }
    }

    /// Subscribes as `threatbus.zeek` does: the subscribe event, the
    /// acknowledgement, and a routing update for the p2p topic. Returns the
    /// p2p topic.
    pub fn subscribe(&mut self, topic: &str, snapshot_ns: i64) -> std::io::Result<String> {
        self.send_event(
            crate::peer::MANAGE_TOPIC,
            "subscribe",
            vec![Value::string(topic), Value::Timespan(snapshot_ns)],
        )?;
        let (_, ack) = self.recv_event()?;
        if ack.name != format!("{}::subscription_acknowledged", self.namespace) {
            return Err(protocol_error(format!("expected the acknowledgement, got {}", ack.name)));
        }
        let p2p = ack.args.first().and_then(Value::as_str).ok_or_else(|| protocol_error("no p2p topic"))?.to_string();
        self.send_routing_update(&[crate::peer::MANAGE_TOPIC, &p2p])?;
        Ok(p2p)
    }
}
