//! Connection bookkeeping of the three sockets (thread `zmq-monitor`):
//! ZeroMQ socket monitors report accepted and closed connections, accept
//! failures (e.g. no file descriptors left) and failed handshakes (e.g. a
//! client without the CURVE key). A flood of connections and every failure
//! are logged at a bounded rate; nothing else depends on this thread.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threatbus_plugin_api::logging::LogLimiter;

/// Open connections on one port from which a warning is logged (and again
/// at every doubling).
pub const FLOOD_WARNING: usize = 1_000;

/// One watched socket.
pub struct Watched {
    /// `management`, `pub` or `sub`.
    pub port_name: &'static str,
    pair: zmq::Socket,
    open: usize,
    warn_at: usize,
}

/// Starts monitoring `socket`; the returned end is read by [`run`].
pub fn watch(ctx: &zmq::Context, socket: &zmq::Socket, port_name: &'static str) -> zmq::Result<Watched> {
    let endpoint = format!("inproc://threatbus-zmq-monitor-{port_name}");
    let events = zmq::SocketEvent::ACCEPTED as i32
        | zmq::SocketEvent::DISCONNECTED as i32
        | zmq::SocketEvent::ACCEPT_FAILED as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
        | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32;
    socket.monitor(&endpoint, events)?;
    let pair = ctx.socket(zmq::PAIR)?;
    pair.set_linger(0)?;
    pair.connect(&endpoint)?;
    Ok(Watched { port_name, pair, open: 0, warn_at: FLOOD_WARNING })
}

/// What a monitor message says: the event and its value (an fd or errno).
fn decode(head: &[u8]) -> Option<(u16, u32)> {
    let event = u16::from_le_bytes(head.get(0..2)?.try_into().ok()?);
    let value = u32::from_le_bytes(head.get(2..6)?.try_into().ok()?);
    Some((event, value))
}

/// Reads the monitors until `wake_fd` becomes readable.
pub fn run(mut watched: Vec<Watched>, wake_fd: RawFd, stopping: Arc<AtomicBool>) {
    let mut failures = LogLimiter::new("connection failures", Duration::from_secs(10), 10);
    loop {
        let mut items: Vec<zmq::PollItem> = watched.iter().map(|w| w.pair.as_poll_item(zmq::POLLIN)).collect();
        items.push(zmq::PollItem::from_fd(wake_fd, zmq::POLLIN));
        match zmq::poll(&mut items, -1) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                log::error!("ZeroMQ monitor cannot poll: {e}");
                break;
            }
        }
        if items.last().is_some_and(|i| i.is_readable()) || stopping.load(Ordering::Relaxed) {
            break;
        }
        let readable: Vec<bool> = items.iter().map(|i| i.is_readable()).collect();
        drop(items);
        for (w, ready) in watched.iter_mut().zip(readable) {
            if ready {
                drain(w, &mut failures);
            }
        }
    }
    log::debug!("ZeroMQ monitor stopped");
}

fn drain(w: &mut Watched, failures: &mut LogLimiter) {
    while let Ok(parts) = w.pair.recv_multipart(zmq::DONTWAIT) {
        let Some((event, value)) = parts.first().and_then(|h| decode(h)) else { continue };
        match zmq::SocketEvent::from_raw(event) {
            zmq::SocketEvent::ACCEPTED => {
                w.open += 1;
                if w.open >= w.warn_at {
                    log::warn!(
                        "{} connections open on the {} port: a flood, or more apps than expected",
                        w.open,
                        w.port_name
                    );
                    w.warn_at = w.warn_at.saturating_mul(2);
                }
            }
            zmq::SocketEvent::DISCONNECTED => {
                w.open = w.open.saturating_sub(1);
                if w.open < FLOOD_WARNING / 2 {
                    w.warn_at = FLOOD_WARNING;
                }
            }
            zmq::SocketEvent::ACCEPT_FAILED => {
                if failures.allow(Instant::now()) {
                    log::error!(
                        "cannot accept a connection on the {} port: {} ({} open)",
                        w.port_name,
                        std::io::Error::from_raw_os_error(value as i32),
                        w.open
                    );
                }
            }
            other => {
                if failures.allow(Instant::now()) {
                    log::warn!("a connection on the {} port failed its handshake ({other:?})", w.port_name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_heads_decode() {
        assert_eq!(decode(&[0x20, 0x00, 24, 0, 0, 0]), Some((32, 24)));
        assert_eq!(decode(&[1, 2, 3]), None);
    }
}
