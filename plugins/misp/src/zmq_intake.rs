//! The ZeroMQ intake (a thread): a SUB socket connected to MISP's
//! publisher, subscribed to `misp_json_attribute`. Every MISP message is
//! one frame, `<topic> <json>`; ZeroMQ reconnects by itself when MISP
//! restarts.

use crate::config::Zmq;
use crate::intake::{Flow, Intake};
use threatbus_http::Stopper;

/// The only MISP topic the plugin consumes.
pub const TOPIC: &str = "misp_json_attribute";

/// How often a blocked receive looks at the stop flag, in milliseconds.
const POLL_MS: i64 = 200;

/// Connects the socket (so that configuration errors surface at start).
pub fn connect(ctx: &zmq::Context, cfg: &Zmq, max_message_size: usize) -> Result<zmq::Socket, String> {
    let endpoint = format!("tcp://{}:{}", cfg.host, cfg.port);
    let socket = ctx.socket(zmq::SUB).map_err(|e| format!("cannot create a ZeroMQ socket: {e}"))?;
    let max = i64::try_from(max_message_size).unwrap_or(i64::MAX);
    socket.set_maxmsgsize(max).map_err(|e| format!("max_message_size: {e}"))?;
    socket.set_linger(0).map_err(|e| e.to_string())?;
    socket.set_subscribe(TOPIC.as_bytes()).map_err(|e| e.to_string())?;
    socket.connect(&endpoint).map_err(|e| format!("zmq: cannot connect to {endpoint}: {e}"))?;
    log::info!("Receiving MISP attributes from ZeroMQ at {endpoint}");
    Ok(socket)
}

/// Receives until the plugin stops.
pub fn run(socket: zmq::Socket, mut intake: Intake, stop: &Stopper) {
    let mut frame = zmq::Message::new();
    let mut skipping = false;
    while !stop.is_stopped() {
        match socket.poll(zmq::POLLIN, POLL_MS) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(zmq::Error::EINTR) => continue,
            Err(e) => {
                log::error!("MISP ZeroMQ intake cannot poll: {e}");
                break;
            }
        }
        loop {
            match socket.recv(&mut frame, zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => break,
                Err(zmq::Error::EINTR) => continue,
                Err(e) => {
                    log::error!("MISP ZeroMQ intake cannot receive: {e}");
                    return;
                }
            }
            // MISP sends one frame per message; skip multipart ones whole.
            let more = frame.get_more();
            if skipping || more {
                skipping = more;
                continue;
            }
            let Some(json) = split(&frame) else {
                continue;
            };
            if intake.handle(json) == Flow::Stop {
                return;
            }
        }
    }
}

/// The JSON of a `misp_json_attribute <json>` frame; `None` for other
/// topics that share the prefix (`misp_json_attributeX`).
fn split(frame: &[u8]) -> Option<&[u8]> {
    let rest = frame.strip_prefix(TOPIC.as_bytes())?;
    rest.strip_prefix(b" ")
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn frames_split_at_the_first_space_after_the_exact_topic() {
        assert_eq!(split(b"misp_json_attribute {\"a\": 1}"), Some(&b"{\"a\": 1}"[..]));
        assert_eq!(split(b"misp_json_attribute "), Some(&b""[..]));
        assert_eq!(split(b"misp_json_attributes {}"), None);
        assert_eq!(split(b"misp_json_attribute"), None);
        assert_eq!(split(b"misp_json_event {}"), None);
    }
}
