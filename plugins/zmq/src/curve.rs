//! Opt-in ZeroMQ CURVE security on all three sockets: the bus is a CURVE
//! server with a key pair read from files; traffic is encrypted and apps
//! must know the server's public key. With `allowed_clients`, a ZAP handler
//! (thread `zmq-zap`) admits only those client public keys.
//!
//! Key files hold one Z85 key (40 characters) on their first line; a
//! secret key file must not be readable by others.

use std::collections::HashSet;
use std::os::fd::RawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use threatbus_plugin_api::logging::{excerpt, LogLimiter};

/// The `curve` subsection of `plugins.apps.zmq`.
#[derive(serde::Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CurveConfig {
    /// The server's Z85 public key.
    pub public_key_file: PathBuf,
    /// The server's Z85 secret key (not readable by others).
    pub secret_key_file: PathBuf,
    /// Z85 public keys of the apps that may connect; empty: any app that
    /// knows the server's public key.
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    /// More allowed keys, one per line (`#` starts a comment).
    #[serde(default)]
    pub allowed_clients_file: Option<PathBuf>,
}

/// The server's keys, binary (32 bytes each).
#[derive(Clone)]
pub struct ServerKeys {
    pub public: Vec<u8>,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerKeys(<redacted>)")
    }
}

/// What `start` needs: the keys and, if restricted, the allowed clients.
pub struct Curve {
    pub keys: ServerKeys,
    pub allowed: Option<HashSet<Vec<u8>>>,
}

fn first_line(path: &Path, key: &str) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("curve.{key}: cannot read {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").trim().to_string())
}

fn decode(z85: &str, what: &str) -> Result<Vec<u8>, String> {
    if z85.len() != 40 {
        return Err(format!("{what}: a Z85 CURVE key has 40 characters, not {}", z85.len()));
    }
    let bin = zmq::z85_decode(z85).map_err(|e| format!("{what}: not a Z85 key ({e})"))?;
    if bin.len() != 32 {
        return Err(format!("{what}: not a 32-byte key"));
    }
    Ok(bin)
}

impl CurveConfig {
    /// Reads and checks the keys.
    pub fn load(&self) -> Result<Curve, String> {
        if zmq::has("curve") != Some(true) {
            return Err("curve: this build's libzmq has no CURVE support; build with Debian's libzmq \
                        (install pkg-config and libzmq3-dev, then rebuild)"
                .into());
        }
        let mode = std::fs::metadata(&self.secret_key_file)
            .map_err(|e| format!("curve.secret_key_file: cannot read {}: {e}", self.secret_key_file.display()))?
            .permissions()
            .mode();
        if mode & 0o004 != 0 {
            return Err(format!(
                "curve.secret_key_file: {} is readable by others (mode {:o}); chmod o-r it",
                self.secret_key_file.display(),
                mode & 0o777
            ));
        }
        let secret_z85 = first_line(&self.secret_key_file, "secret_key_file")?;
        let public_z85 = first_line(&self.public_key_file, "public_key_file")?;
        let secret = decode(&secret_z85, "curve.secret_key_file")?;
        let public = decode(&public_z85, "curve.public_key_file")?;
        let derived = threatbus_zmq_sockopt::curve_public(&secret_z85)
            .map_err(|e| format!("curve.secret_key_file: cannot derive its public key: {e}"))?;
        if derived != public_z85 {
            return Err("curve: public_key_file does not hold the public key of secret_key_file".into());
        }
        let mut listed: Vec<(String, String)> = self
            .allowed_clients
            .iter()
            .enumerate()
            .map(|(i, k)| (k.trim().to_string(), format!("curve.allowed_clients[{i}]")))
            .collect();
        if let Some(file) = &self.allowed_clients_file {
            let text = std::fs::read_to_string(file)
                .map_err(|e| format!("curve.allowed_clients_file: cannot read {}: {e}", file.display()))?;
            for (n, line) in text.lines().enumerate() {
                let key = line.split('#').next().unwrap_or("").trim();
                if !key.is_empty() {
                    listed.push((key.to_string(), format!("curve.allowed_clients_file line {}", n + 1)));
                }
            }
        }
        let allowed = if listed.is_empty() {
            None
        } else {
            Some(listed.iter().map(|(k, what)| decode(k, what)).collect::<Result<HashSet<_>, _>>()?)
        };
        Ok(Curve { keys: ServerKeys { public, secret }, allowed })
    }
}

/// ZAP domain the bus's sockets use.
pub const ZAP_DOMAIN: &str = "threatbus";

/// Makes `socket` a CURVE server with `keys`.
pub fn apply(socket: &zmq::Socket, keys: &ServerKeys) -> zmq::Result<()> {
    socket.set_curve_server(true)?;
    socket.set_curve_secretkey(&keys.secret)?;
    socket.set_zap_domain(ZAP_DOMAIN)
}

/// Binds the ZAP handler's socket (before any CURVE socket is bound, so that
/// no connection is ever authenticated without it).
pub fn bind_zap(ctx: &zmq::Context) -> zmq::Result<zmq::Socket> {
    let s = ctx.socket(zmq::REP)?;
    s.set_linger(0)?;
    s.bind("inproc://zeromq.zap.01")?;
    Ok(s)
}

/// The ZAP handler (ZeroMQ RFC 27): admits CURVE clients whose public key
/// is in `allowed`; refuses everything else. Runs until `wake_fd` becomes
/// readable.
pub fn serve_zap(socket: zmq::Socket, allowed: HashSet<Vec<u8>>, wake_fd: RawFd, stopping: Arc<AtomicBool>) {
    let mut refused = LogLimiter::new("refused CURVE clients", Duration::from_secs(10), 10);
    loop {
        let mut items = [socket.as_poll_item(zmq::POLLIN), zmq::PollItem::from_fd(wake_fd, zmq::POLLIN)];
        match zmq::poll(&mut items, -1) {
            Ok(_) | Err(zmq::Error::EINTR) => {}
            Err(e) => {
                log::error!("ZAP handler cannot poll: {e}");
                break;
            }
        }
        if items[1].is_readable() || stopping.load(Ordering::Relaxed) {
            break;
        }
        if !items[0].is_readable() {
            continue;
        }
        let Ok(frames) = socket.recv_multipart(zmq::DONTWAIT) else { continue };
        let reply = answer(&frames, &allowed, &mut refused);
        if let Err(e) = socket.send_multipart(reply, 0) {
            log::error!("ZAP handler cannot reply: {e}");
        }
    }
    log::debug!("ZAP handler stopped");
}

/// The reply to one ZAP request.
fn answer(frames: &[Vec<u8>], allowed: &HashSet<Vec<u8>>, refused: &mut LogLimiter) -> Vec<Vec<u8>> {
    let request_id = frames.get(1).cloned().unwrap_or_default();
    let reply = |code: &str, text: &str, user: &[u8]| {
        vec![
            b"1.0".to_vec(),
            request_id.clone(),
            code.as_bytes().to_vec(),
            text.as_bytes().to_vec(),
            user.to_vec(),
            Vec::new(),
        ]
    };
    if frames.len() < 6 || frames[0] != b"1.0" {
        return reply("500", "malformed ZAP request", b"");
    }
    let (address, mechanism) = (String::from_utf8_lossy(&frames[3]), &frames[5]);
    let key = match (mechanism.as_slice(), frames.get(6)) {
        (b"CURVE", Some(key)) if key.len() == 32 => key,
        _ => {
            if refused.allow(Instant::now()) {
                log::warn!("refused a ZeroMQ client from {address}: mechanism {} is not CURVE", excerpt(mechanism));
            }
            return reply("400", "CURVE required", b"");
        }
    };
    let z85 = zmq::z85_encode(key).unwrap_or_default();
    if allowed.contains(key) {
        log::debug!("admitted CURVE client {z85} from {address}");
        reply("200", "OK", z85.as_bytes())
    } else {
        if refused.allow(Instant::now()) {
            log::warn!("refused CURVE client {z85} from {address}: its key is not in curve.allowed_clients");
        }
        reply("400", "client key not allowed", b"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(mechanism: &str, key: &[u8]) -> Vec<Vec<u8>> {
        vec![
            b"1.0".to_vec(),
            b"7".to_vec(),
            ZAP_DOMAIN.as_bytes().to_vec(),
            b"127.0.0.1".to_vec(),
            Vec::new(),
            mechanism.as_bytes().to_vec(),
            key.to_vec(),
        ]
    }

    #[test]
    fn zap_admits_listed_keys_only() {
        let mut limiter = LogLimiter::new("t", Duration::from_secs(1), 100);
        let allowed: HashSet<Vec<u8>> = [vec![1u8; 32]].into_iter().collect();
        let ok = answer(&req("CURVE", &[1; 32]), &allowed, &mut limiter);
        assert_eq!((ok[1].as_slice(), ok[2].as_slice()), (&b"7"[..], &b"200"[..]));
        assert_eq!(answer(&req("CURVE", &[2; 32]), &allowed, &mut limiter)[2], b"400");
        assert_eq!(answer(&req("NULL", b""), &allowed, &mut limiter)[2], b"400");
        assert_eq!(answer(&[b"2.0".to_vec()], &allowed, &mut limiter)[2], b"500");
    }
}
