//! Direct queues: a [`Queue`] handle whose `send` runs a [`DirectSink`] on
//! the sender's thread instead of storing the message for a receiver.
//!
//! A backbone that routes in-process offers one to the host
//! ([`crate::Host::offer_direct_inq`]); the host then gives apps this
//! handle as their `inq`, and each message reaches its subscriber queues
//! without a hand-off to a backbone thread.

use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use abi_stable::std_types::{ROption, RVec};

use super::{QueueVTable, RecvStatus, SendError, SendStatus};
use crate::{Host, Message, Queue};

/// What a direct queue does with each message sent to it, on the sender's
/// thread. Implemented by backbones that route in-process.
pub trait DirectSink: Send + Sync + 'static {
    /// Hands `msg` to every queue it goes to and returns once it has.
    ///
    /// It may wait for room in a full lossless (`BLOCK`) subscriber queue,
    /// but must stop waiting once `closed` is set (the queue was closed) or
    /// the backbone stops. It must never report an error after delivering
    /// to some queues: a sender that sees an error may send the message
    /// again. The send's timeout does not apply.
    fn deliver(&self, msg: Message, closed: &AtomicBool) -> Result<(), SendError>;
}

/// The state behind a direct handle.
struct DirectState {
    sink: Box<dyn DirectSink>,
    /// Set by `close`; sends are refused afterwards.
    closed: AtomicBool,
    /// Told when the sink panics (then the queue closes).
    host: Option<Host>,
}

impl Queue {
    /// A queue whose sends run `sink` on the sender's thread. It never
    /// holds a message: receiving from it returns nothing at once, its
    /// length is 0. Closing it refuses later sends and tells deliveries
    /// still waiting to give up.
    pub fn direct(sink: impl DirectSink) -> Queue {
        Self::direct_for(sink, None)
    }

    /// [`Queue::direct`] that reports a panic of `sink` to `host` (which
    /// marks the plugin failed).
    pub(crate) fn direct_for(sink: impl DirectSink, host: Option<Host>) -> Queue {
        let st = Arc::new(DirectState { sink: Box::new(sink), closed: AtomicBool::new(false), host });
        Queue {
            state: Arc::into_raw(st) as *const c_void,
            vtable: &DIRECT_VTABLE as *const QueueVTable as *const c_void,
        }
    }
}

/// # Safety
/// `p` must be the state of a live handle made by [`Queue::direct_for`].
unsafe fn direct<'a>(p: *const c_void) -> &'a DirectState {
    // SAFETY: the caller's promise; the handle holds a reference.
    unsafe { &*(p as *const DirectState) }
}

unsafe extern "C" fn d_retain(p: *const c_void) -> *const c_void {
    // SAFETY: `p` came from Arc::into_raw in `Queue::direct_for` and is alive.
    unsafe { Arc::increment_strong_count(p as *const DirectState) };
    p
}

unsafe extern "C" fn d_release(p: *const c_void) {
    // SAFETY: balanced with `Arc::into_raw` / `d_retain`. The sink is
    // dropped here, in its own library, with the last handle.
    let _ = catch_unwind(|| unsafe { drop(Arc::from_raw(p as *const DirectState)) });
}

unsafe extern "C" fn d_send(p: *const c_void, msg: Message, _timeout_ms: u64) -> SendStatus {
    // SAFETY: called through a handle that holds a reference to the state.
    let s = unsafe { direct(p) };
    if s.closed.load(Ordering::Acquire) {
        return SendStatus::CLOSED;
    }
    match catch_unwind(AssertUnwindSafe(|| s.sink.deliver(msg, &s.closed))) {
        Ok(Ok(())) => SendStatus::OK,
        Ok(Err(SendError::Closed)) => SendStatus::CLOSED,
        Ok(Err(SendError::Full)) => SendStatus::FULL,
        Ok(Err(SendError::Dropped)) => SendStatus::DROPPED,
        Err(_) => {
            s.closed.store(true, Ordering::Release);
            let why = "its direct inbound route panicked; it refuses further messages";
            match s.host {
                Some(host) => host.report_failure(why),
                None => log::error!("a direct queue's sink panicked; the queue is closed"),
            }
            SendStatus::CLOSED
        }
    }
}

unsafe extern "C" fn d_recv(_: *const c_void, _: u64, _: &mut ROption<Message>) -> RecvStatus {
    RecvStatus::CLOSED
}

unsafe extern "C" fn d_recv_batch(_: *const c_void, _: usize, _: u64, _: &mut RVec<Message>) -> RecvStatus {
    RecvStatus::CLOSED
}

unsafe extern "C" fn d_close(p: *const c_void) {
    // SAFETY: as in `d_send`.
    unsafe { direct(p) }.closed.store(true, Ordering::Release);
}

unsafe extern "C" fn d_is_closed(p: *const c_void) -> bool {
    // SAFETY: as in `d_send`.
    unsafe { direct(p) }.closed.load(Ordering::Acquire)
}

unsafe extern "C" fn d_zero(_: *const c_void) -> usize {
    0
}

unsafe extern "C" fn d_capacity(_: *const c_void) -> usize {
    usize::MAX
}

unsafe extern "C" fn d_dropped(_: *const c_void) -> u64 {
    0
}

/// The table of direct handles made by this library.
static DIRECT_VTABLE: QueueVTable = QueueVTable {
    size: std::mem::size_of::<QueueVTable>(),
    retain: d_retain,
    release: d_release,
    send: d_send,
    recv: d_recv,
    recv_batch: d_recv_batch,
    close: d_close,
    is_closed: d_is_closed,
    len: d_zero,
    capacity: d_capacity,
    dropped: d_dropped,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MessageKind, Overflow};
    use std::time::Duration;

    /// Forwards to one queue, waiting while it is full until closed.
    struct Forward(Queue);

    impl DirectSink for Forward {
        fn deliver(&self, msg: Message, closed: &AtomicBool) -> Result<(), SendError> {
            self.0.send_or_stop(msg, closed)
        }
    }

    fn msg(n: u32) -> Message {
        Message::from_validated_json(MessageKind::INDICATOR, format!("{{\"n\": {n}}}"))
    }

    #[test]
    fn delivers_on_the_senders_thread_and_holds_nothing() {
        let target = Queue::bounded(10, Overflow::BLOCK);
        let q = Queue::direct(Forward(target.clone()));
        q.send(msg(1)).unwrap();
        q.clone().try_send(msg(2)).unwrap();
        assert_eq!(target.len(), 2, "delivered before send returned");
        assert_eq!((q.len(), q.capacity(), q.dropped()), (0, usize::MAX, 0));
        assert!(matches!(q.recv_timeout(Duration::from_millis(1)), crate::Received::Closed), "nothing to receive");
        q.close();
        assert!(q.is_closed());
        assert_eq!(q.send(msg(3)), Err(SendError::Closed));
        assert_eq!(target.len(), 2);
    }

    #[test]
    fn closing_ends_a_delivery_that_waits() {
        let full = Queue::bounded(1, Overflow::BLOCK);
        full.send(msg(0)).unwrap();
        let q = Queue::direct(Forward(full.clone()));
        let sender = {
            let q = q.clone();
            std::thread::spawn(move || q.send(msg(1)))
        };
        // Whether the sender already waits on the full target or has not
        // started yet, closing the direct queue ends its send: refused, or
        // given up within one retry interval.
        q.close();
        let r = sender.join().unwrap();
        assert!(matches!(r, Err(SendError::Full | SendError::Closed)), "{r:?}");
        assert_eq!(full.len(), 1);
    }

    struct Panics;

    impl DirectSink for Panics {
        fn deliver(&self, _: Message, _: &AtomicBool) -> Result<(), SendError> {
            panic!("boom")
        }
    }

    #[test]
    fn a_panicking_sink_closes_the_queue() {
        let q = Queue::direct(Panics);
        assert_eq!(q.send(msg(1)), Err(SendError::Closed));
        assert!(q.is_closed());
        assert_eq!(q.send(msg(2)), Err(SendError::Closed));
    }
}
