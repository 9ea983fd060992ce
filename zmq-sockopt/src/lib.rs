//! ZeroMQ socket options that the `zmq` crate does not expose, set through
//! `zmq_setsockopt` on the crate's own socket, and `zmq_curve_public`. Kept apart so that the
//! plugins stay free of `unsafe`.

use std::ffi::{c_int, c_void};

/// Sets an integer option on `socket`.
fn set_int(socket: &mut zmq::Socket, option: u32, value: i32) -> zmq::Result<()> {
    let raw = socket.as_mut_ptr();
    // SAFETY: `raw` is the live socket owned by `socket`, which the mutable
    // borrow keeps alive and unshared for the call; the value pointer and
    // length describe a local `c_int`, as zmq_setsockopt(3) requires for
    // integer options.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            raw,
            option as c_int,
            (&value as *const c_int).cast::<c_void>(),
            std::mem::size_of::<c_int>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: zmq_errno only reads the calling thread's errno.
        Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }))
    }
}

/// `ZMQ_XPUB_MANUAL`: subscriptions arriving on an XPUB socket are passed
/// to the application only; it applies the ones it accepts with
/// [`zmq::Socket::set_subscribe`] right after receiving them.
pub fn set_xpub_manual(socket: &mut zmq::Socket, on: bool) -> zmq::Result<()> {
    set_int(socket, zmq_sys::ZMQ_XPUB_MANUAL, on as i32)
}

/// `ZMQ_XPUB_NODROP`: a send that would exceed a subscriber's high-water
/// mark fails with `EAGAIN` (with `DONTWAIT`) instead of being dropped
/// silently.
pub fn set_xpub_nodrop(socket: &mut zmq::Socket, on: bool) -> zmq::Result<()> {
    set_int(socket, zmq_sys::ZMQ_XPUB_NODROP, on as i32)
}

/// The Z85 public key of a Z85 CURVE secret key (`zmq_curve_public`).
pub fn curve_public(secret_z85: &str) -> zmq::Result<String> {
    let secret = std::ffi::CString::new(secret_z85).map_err(|_| zmq::Error::EINVAL)?;
    if secret_z85.len() != 40 {
        return Err(zmq::Error::EINVAL);
    }
    let mut public = [0u8; 41];
    // SAFETY: `public` has room for 40 Z85 characters and the NUL that
    // zmq_curve_public writes; `secret` is a NUL-terminated 40-character key.
    let rc = unsafe { zmq_sys::zmq_curve_public(public.as_mut_ptr().cast(), secret.as_ptr()) };
    if rc != 0 {
        // SAFETY: zmq_errno only reads the calling thread's errno.
        return Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }));
    }
    Ok(String::from_utf8_lossy(&public[..40]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_key_follows_from_the_secret_key() {
        if zmq::has("curve") != Some(true) {
            assert_eq!(curve_public(&"0".repeat(40)), Err(zmq::Error::ENOTSUP));
            return;
        }
        let pair = zmq::CurveKeyPair::new().unwrap();
        let secret = zmq::z85_encode(&pair.secret_key).unwrap();
        assert_eq!(curve_public(&secret).unwrap(), zmq::z85_encode(&pair.public_key).unwrap());
        assert_eq!(curve_public("short"), Err(zmq::Error::EINVAL));
    }

    #[test]
    fn options_apply_to_xpub_and_are_refused_elsewhere() {
        let ctx = zmq::Context::new();
        let mut xpub = ctx.socket(zmq::XPUB).unwrap();
        set_xpub_manual(&mut xpub, true).unwrap();
        set_xpub_nodrop(&mut xpub, true).unwrap();
        let mut rep = ctx.socket(zmq::REP).unwrap();
        assert_eq!(set_xpub_manual(&mut rep, true), Err(zmq::Error::EINVAL));
    }

    #[test]
    fn manual_mode_applies_only_what_the_application_accepts() {
        let ctx = zmq::Context::new();
        let mut xpub = ctx.socket(zmq::XPUB).unwrap();
        set_xpub_manual(&mut xpub, true).unwrap();
        xpub.bind("inproc://manual").unwrap();
        let sub = ctx.socket(zmq::SUB).unwrap();
        sub.connect("inproc://manual").unwrap();
        sub.set_subscribe(b"").unwrap();
        sub.set_subscribe(b"mine").unwrap();
        // Refuse the empty prefix, accept "mine".
        let ev = xpub.recv_bytes(0).unwrap();
        assert_eq!(ev, b"\x01");
        let ev = xpub.recv_bytes(0).unwrap();
        assert_eq!(ev, b"\x01mine");
        xpub.set_subscribe(b"mine").unwrap();
        xpub.send("other: not for this subscriber", 0).unwrap();
        xpub.send("mine: delivered", 0).unwrap();
        assert_eq!(sub.recv_bytes(0).unwrap(), b"mine: delivered");
    }
}
