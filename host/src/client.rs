//! `threatbus watch` and `threatbus publish`: check a running bus end to
//! end through its zmq app, as any app would, without writing a client.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threatbus_plugin_api::MessageKind;

/// How long to wait for the bus before giving up.
const WAIT: Duration = Duration::from_secs(10);
/// Seconds between heartbeats, as the Python apps send them.
const HEARTBEAT: Duration = Duration::from_secs(5);

/// Set by SIGINT / SIGTERM; the loops check it.
fn stop_flag() -> Result<Arc<AtomicBool>, String> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, flag.clone()).map_err(|e| format!("cannot install signal handlers: {e}"))?;
    }
    Ok(flag)
}

/// Splits `host:port`.
fn host_port(s: &str, what: &str) -> Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{what} must be HOST:PORT, got '{s}'"))?;
    let port = port.parse().map_err(|_| format!("{what}: '{port}' is not a port number"))?;
    Ok((host.to_string(), port))
}

/// One request to the management port; the reply as JSON.
fn manage(ctx: &zmq::Context, endpoint: &str, request: &serde_json::Value) -> Result<serde_json::Value, String> {
    let s = ctx.socket(zmq::REQ).map_err(|e| e.to_string())?;
    s.set_linger(0).map_err(|e| e.to_string())?;
    s.connect(endpoint).map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    s.send(request.to_string().as_bytes(), 0).map_err(|e| e.to_string())?;
    if s.poll(zmq::POLLIN, WAIT.as_millis() as i64).map_err(|e| e.to_string())? == 0 {
        return Err(format!(
            "no answer from {endpoint} within {} s: is threatbus running with the zmq app's management port there?",
            WAIT.as_secs()
        ));
    }
    let reply = s.recv_bytes(0).map_err(|e| e.to_string())?;
    serde_json::from_slice(&reply).map_err(|e| format!("{endpoint} answered something that is not JSON: {e}"))
}

/// Subscribes to `topics` through the management port at `manage_at` and
/// prints every message that arrives, one JSON object a line, until
/// interrupted or `count` messages were printed.
pub fn watch(topics: &[String], manage_at: &str, snapshot_days: u64, count: Option<u64>) -> Result<(), String> {
    let (host, port) = host_port(manage_at, "--manage")?;
    let endpoint = format!("tcp://{host}:{port}");
    let stop = stop_flag()?;
    let ctx = zmq::Context::new();
    let topic = if topics.len() == 1 { serde_json::json!(topics[0]) } else { serde_json::json!(topics) };
    let reply = manage(
        &ctx,
        &endpoint,
        &serde_json::json!({"action": "subscribe", "topic": topic, "snapshot": snapshot_days}),
    )?;
    if reply["status"] != "success" {
        return Err(format!("the bus refused the subscription: {reply}"));
    }
    let p2p = reply["topic"].as_str().ok_or("the bus's reply has no p2p topic")?.to_string();
    let pub_port = reply["pub_port"].as_u64().ok_or("the bus's reply has no pub_port")?;
    let sub = ctx.socket(zmq::SUB).map_err(|e| e.to_string())?;
    sub.set_linger(0).map_err(|e| e.to_string())?;
    sub.set_rcvhwm(0).map_err(|e| e.to_string())?;
    sub.connect(&format!("tcp://{host}:{pub_port}")).map_err(|e| e.to_string())?;
    sub.set_subscribe(p2p.as_bytes()).map_err(|e| e.to_string())?;
    eprintln!(
        "threatbus watch: subscribed to {} at {endpoint}; messages follow, one JSON object a line",
        topics.join(", ")
    );

    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    let mut last_heartbeat = Instant::now();
    let outcome = loop {
        if stop.load(Ordering::Relaxed) || count.is_some_and(|c| printed >= c) {
            break Ok(());
        }
        match sub.poll(zmq::POLLIN, 200) {
            Ok(0) => {}
            Ok(_) => {
                let frame = match sub.recv_bytes(0) {
                    Ok(f) => f,
                    Err(e) => break Err(e.to_string()),
                };
                let text = String::from_utf8_lossy(&frame);
                let json = text.strip_prefix(p2p.as_str()).and_then(|rest| rest.split_once(' ')).map(|(_, j)| j);
                let Some(json) = json else { continue };
                if writeln!(out, "{json}").and_then(|()| out.flush()).is_err() {
                    break Ok(()); // the reader went away (e.g. `| head`)
                }
                printed += 1;
            }
            Err(zmq::Error::EINTR) => {}
            Err(e) => break Err(e.to_string()),
        }
        if last_heartbeat.elapsed() >= HEARTBEAT {
            last_heartbeat = Instant::now();
            // A heartbeat the bus does not answer is not fatal: it may be restarting.
            let _ = manage(&ctx, &endpoint, &serde_json::json!({"action": "heartbeat", "topic": p2p}));
        }
    };
    let _ = manage(&ctx, &endpoint, &serde_json::json!({"action": "unsubscribe", "topic": p2p}));
    outcome
}

/// Sends the indicators and sightings of `input` (a file, or `-` for
/// standard input; one JSON object a line) to the zmq app's sub port at
/// `sub_at`. Lines that fail validation are reported and not sent.
pub fn publish(input: &str, sub_at: &str) -> Result<(), String> {
    let reader: Box<dyn BufRead> = if input == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(std::fs::File::open(input).map_err(|e| format!("cannot read {input}: {e}"))?))
    };
    let (host, port) = host_port(sub_at, "--sub")?;
    let endpoint = format!("tcp://{host}:{port}");
    let ctx = zmq::Context::new();
    // An XPUB socket sees the bus's subscription arrive, so nothing is sent
    // into the void before the bus listens.
    let xpub = ctx.socket(zmq::XPUB).map_err(|e| e.to_string())?;
    xpub.set_linger(WAIT.as_millis() as i32).map_err(|e| e.to_string())?;
    xpub.set_sndhwm(0).map_err(|e| e.to_string())?;
    xpub.connect(&endpoint).map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || xpub.poll(zmq::POLLIN, left.as_millis() as i64).map_err(|e| e.to_string())? == 0 {
            return Err(format!(
                "no Threat Bus subscribed at {endpoint} within {} s: is threatbus running with the zmq app's sub port there?",
                WAIT.as_secs()
            ));
        }
        let frame = xpub.recv_bytes(0).map_err(|e| e.to_string())?;
        if frame.first() == Some(&1) && b"stix2/".starts_with(&frame[1..]) {
            break;
        }
    }
    let (mut sent, mut invalid) = (0u64, 0u64);
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {input}: {e}"))?;
        let json = line.trim();
        if json.is_empty() {
            continue;
        }
        let kind = crate::validate::kind_named_in(json)
            .and_then(|k| crate::validate::parse(k, json).map(|_| k))
            .and_then(|k| match k {
                MessageKind::INDICATOR | MessageKind::SIGHTING => Ok(k),
                _ => Err(crate::validate::Rejection {
                    reason: "wrong_kind",
                    message: format!("a {}; only indicators and sightings can be published", k.type_name()),
                }),
            });
        match kind {
            Ok(k) => {
                xpub.send(format!("{} {json}", k.topic()).as_bytes(), 0).map_err(|e| e.to_string())?;
                sent += 1;
            }
            Err(e) => {
                invalid += 1;
                eprintln!("threatbus publish: line {}: not sent: {e}", n + 1);
            }
        }
    }
    drop(xpub); // waits up to the linger time for the frames to leave
    eprintln!("threatbus publish: sent {sent} messages to {endpoint}; {invalid} invalid lines not sent");
    if invalid > 0 {
        return Err(format!("{invalid} invalid lines were not sent"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_host_and_port() {
        assert_eq!(host_port("127.0.0.1:13370", "--manage").unwrap(), ("127.0.0.1".to_string(), 13370));
        assert_eq!(host_port("[::1]:1", "--manage").unwrap(), ("[::1]".to_string(), 1));
        assert!(host_port("localhost", "--manage").unwrap_err().contains("HOST:PORT"));
        assert!(host_port("h:99999", "--sub").unwrap_err().contains("not a port"));
    }
}
