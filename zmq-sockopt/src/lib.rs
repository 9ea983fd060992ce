//! ZeroMQ socket options that the `zmq` crate does not expose, set through
//! `zmq_setsockopt` on the crate's own socket. Kept apart so that the
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

#[cfg(test)]
mod tests {
    use super::*;

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
