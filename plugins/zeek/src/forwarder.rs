//! The forwarder of one Zeek subscription (a thread): takes indicators
//! from the subscription's bus queue, maps them to `<namespace>::intel`
//! events and hands them to the peer's connection.

use std::sync::Arc;

use threatbus_plugin_api::{spawn_thread, MessageKind, Queue};
use threatbus_stix::Indicator;
use tokio::sync::mpsc;

use crate::events::intel_event;
use crate::value;
use crate::wire::{EndpointId, Envelope, EnvelopeType, DEFAULT_TTL, NIL};
use crate::Shared;

/// Starts the forwarder; it ends when `queue` is closed and drained or the
/// connection is gone.
pub fn start(
    shared: Arc<Shared>,
    queue: Queue,
    p2p: String,
    ours: EndpointId,
    outbound: mpsc::Sender<Envelope>,
) -> std::io::Result<()> {
    let host = shared.host;
    spawn_thread(host, "zeek-forwarder", move || run(&shared, &queue, &p2p, ours, &outbound)).map(drop)
}

fn run(shared: &Shared, queue: &Queue, p2p: &str, ours: EndpointId, outbound: &mpsc::Sender<Envelope>) {
    let ns = &shared.cfg.module_namespace;
    while let Some(msg) = queue.recv() {
        if msg.kind() != MessageKind::INDICATOR {
            continue;
        }
        let indicator = match Indicator::parse(msg.json()) {
            Ok(i) => i,
            Err(e) => {
                log::error!("zeek: cannot read an indicator from the bus: {e}");
                continue;
            }
        };
        let event = match intel_event(ns, &indicator) {
            Ok(e) => e,
            Err(why) => {
                log::debug!("zeek: not sending {} to Zeek: {why}", indicator.id());
                continue;
            }
        };
        let env = Envelope {
            sender: ours,
            receiver: NIL,
            kind: EnvelopeType::Data,
            ttl: DEFAULT_TTL,
            topic: p2p.to_string(),
            payload: value::encode(&event.to_value()),
        };
        if outbound.blocking_send(env).is_err() {
            break;
        }
    }
    let dropped = queue.dropped();
    if dropped > 0 {
        log::warn!("zeek: subscription {p2p} dropped {dropped} indicators because Zeek did not keep up");
    }
}
