//! [`Queue`]: the FFI-safe, bounded, closable message queue used for `inq`
//! and for every subscriber queue.
//!
//! The queue's functions live in the library that created it (its vtable),
//! so a queue can be handed across the plugin boundary freely. Closing a
//! queue wakes every blocked sender and receiver: stopping never needs a
//! poll loop.

#![allow(non_camel_case_types)]

use std::collections::VecDeque;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use abi_stable::{
    std_types::{ROption, RVec},
    StableAbi,
};

use crate::Message;

mod direct;
pub use direct::DirectSink;

/// What a full queue does with a new message.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct Overflow(pub u32);

impl Overflow {
    /// The sender waits for space (backpressure). Used for `inq`.
    pub const BLOCK: Overflow = Overflow(0);
    /// The new message is dropped and counted (see [`Queue::dropped`]).
    /// Used for subscriber queues of consumers that must not stall the bus.
    pub const DROP_NEWEST: Overflow = Overflow(1);
}

/// Result of a send.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct SendStatus(pub u32);

impl SendStatus {
    /// The message was enqueued.
    pub const OK: SendStatus = SendStatus(0);
    /// The queue was full until the timeout; the message was not enqueued.
    pub const FULL: SendStatus = SendStatus(1);
    /// The queue is closed; the message was not enqueued.
    pub const CLOSED: SendStatus = SendStatus(2);
    /// The queue is full and drops new messages; this one was dropped and counted.
    pub const DROPPED: SendStatus = SendStatus(3);
}

/// Result of a receive.
#[repr(transparent)]
#[derive(StableAbi, Copy, Clone, PartialEq, Eq, Debug)]
pub struct RecvStatus(pub u32);

impl RecvStatus {
    /// At least one message was received.
    pub const OK: RecvStatus = RecvStatus(0);
    /// Nothing arrived before the timeout.
    pub const TIMEOUT: RecvStatus = RecvStatus(1);
    /// The queue is closed and empty.
    pub const CLOSED: RecvStatus = RecvStatus(2);
}

/// Timeout value meaning "wait forever".
pub const FOREVER_MS: u64 = u64::MAX;

/// Queue: returns a new reference to the same queue.
pub type RetainFn = unsafe extern "C" fn(state: *const c_void) -> *const c_void;
/// Queue: releases one reference.
pub type ReleaseFn = unsafe extern "C" fn(state: *const c_void);
/// Queue: enqueues `msg`, waiting up to `timeout_ms` for space (BLOCK queues).
pub type SendFn = unsafe extern "C" fn(state: *const c_void, msg: Message, timeout_ms: u64) -> SendStatus;
/// Queue: receives one message into `out`, waiting up to `timeout_ms`.
pub type RecvFn = unsafe extern "C" fn(state: *const c_void, timeout_ms: u64, out: &mut ROption<Message>) -> RecvStatus;
/// Queue: appends up to `max` messages to `out`, waiting up to `timeout_ms` for the first.
pub type RecvBatchFn =
    unsafe extern "C" fn(state: *const c_void, max: usize, timeout_ms: u64, out: &mut RVec<Message>) -> RecvStatus;
/// Queue: closes the queue and wakes all waiters.
pub type QueueFn = unsafe extern "C" fn(state: *const c_void);
/// Queue: whether the queue is closed.
pub type IsClosedFn = unsafe extern "C" fn(state: *const c_void) -> bool;
/// Queue: a count (queued messages, capacity).
pub type CountFn = unsafe extern "C" fn(state: *const c_void) -> usize;
/// Queue: total number of messages dropped because the queue was full.
pub type DroppedFn = unsafe extern "C" fn(state: *const c_void) -> u64;

/// The queue's functions, provided by the library that created the queue
/// and valid for the rest of the process. `size` is the size of the table
/// as that library built it (see [`crate::abi`] for how entries are
/// appended).
#[repr(C)]
pub struct QueueVTable {
    /// Size of this table as its implementer built it.
    pub size: usize,
    /// See [`RetainFn`].
    pub retain: RetainFn,
    /// See [`ReleaseFn`].
    pub release: ReleaseFn,
    /// See [`SendFn`].
    pub send: SendFn,
    /// See [`RecvFn`].
    pub recv: RecvFn,
    /// See [`RecvBatchFn`].
    pub recv_batch: RecvBatchFn,
    /// Closes the queue (see [`QueueFn`]).
    pub close: QueueFn,
    /// See [`IsClosedFn`].
    pub is_closed: IsClosedFn,
    /// Number of queued messages (see [`CountFn`]).
    pub len: CountFn,
    /// Capacity of the queue (see [`CountFn`]).
    pub capacity: CountFn,
    /// See [`DroppedFn`].
    pub dropped: DroppedFn,
}

/// A handle to a bounded, closable message queue. Cheap to clone; all clones
/// refer to the same queue, and [`Queue::id`] identifies it.
#[repr(C)]
#[derive(StableAbi)]
pub struct Queue {
    state: *const c_void,
    /// `*const QueueVTable` of the library that created the queue.
    vtable: *const c_void,
}

// SAFETY: the state behind the vtable is thread-safe (an `Arc<QueueState>`
// in queues made by this crate; the same contract for any implementer).
unsafe impl Send for Queue {}
// SAFETY: see `Send`.
unsafe impl Sync for Queue {}

struct Inner {
    buf: VecDeque<Message>,
    /// Sum of the JSON lengths of the messages in `buf`.
    bytes: usize,
    closed: bool,
    /// Receivers blocked in `not_empty`; a send wakes one only if any
    /// (saves a futex system call per message on a busy queue).
    waiting_receivers: usize,
    /// Senders blocked in `not_full`.
    waiting_senders: usize,
}

struct QueueState {
    inner: Mutex<Inner>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    /// Largest sum of JSON lengths held at once (`usize::MAX`: unbounded).
    /// A single message larger than this still fits into an empty queue.
    max_bytes: usize,
    overflow: Overflow,
    dropped: AtomicU64,
    /// Rung when the queue becomes non-empty or is closed.
    bell: Option<(Arc<Doorbell>, u64)>,
}

impl QueueState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked while holding
        // it; the VecDeque is still consistent, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `len` more bytes fit.
    fn has_room(&self, inner: &Inner, len: usize) -> bool {
        inner.buf.len() < self.capacity && (inner.buf.is_empty() || inner.bytes.saturating_add(len) <= self.max_bytes)
    }
}

/// Takes the first `n` messages of `inner.buf`, keeping `bytes` true.
fn take_front(inner: &mut Inner, n: usize, mut put: impl FnMut(Message)) {
    for m in inner.buf.drain(..n) {
        inner.bytes -= m.json().len();
        put(m);
    }
}

fn deadline(timeout_ms: u64) -> Option<Instant> {
    if timeout_ms == FOREVER_MS {
        None
    } else {
        Instant::now().checked_add(Duration::from_millis(timeout_ms))
    }
}

/// Waits on `cv` until `deadline`; returns the guard and whether time is up.
fn wait<'a>(cv: &Condvar, guard: MutexGuard<'a, Inner>, deadline: Option<Instant>) -> (MutexGuard<'a, Inner>, bool) {
    match deadline {
        None => (cv.wait(guard).unwrap_or_else(|e| e.into_inner()), false),
        Some(d) => {
            let now = Instant::now();
            if now >= d {
                return (guard, true);
            }
            let (g, _) = cv.wait_timeout(guard, d - now).unwrap_or_else(|e| e.into_inner());
            (g, false)
        }
    }
}

/// # Safety
/// `p` must be the state of a live queue made by [`Queue::bounded`].
unsafe fn state<'a>(p: *const c_void) -> &'a QueueState {
    // SAFETY: the caller's promise; the handle holds a reference.
    unsafe { &*(p as *const QueueState) }
}

unsafe extern "C" fn q_retain(p: *const c_void) -> *const c_void {
    // SAFETY: `p` came from Arc::into_raw in `Queue::bounded` and is alive.
    unsafe { Arc::increment_strong_count(p as *const QueueState) };
    p
}

unsafe extern "C" fn q_release(p: *const c_void) {
    // SAFETY: balanced with `Arc::into_raw` / `q_retain`.
    unsafe { drop(Arc::from_raw(p as *const QueueState)) };
}

unsafe extern "C" fn q_send(p: *const c_void, msg: Message, timeout_ms: u64) -> SendStatus {
    // SAFETY: called through a handle that holds a reference to the queue.
    let s = unsafe { state(p) };
    let mut g = s.lock();
    let deadline = deadline(timeout_ms);
    loop {
        if g.closed {
            return SendStatus::CLOSED;
        }
        let len = msg.json().len();
        if s.has_room(&g, len) {
            let was_empty = g.buf.is_empty();
            g.bytes += len;
            g.buf.push_back(msg);
            let wake = g.waiting_receivers > 0;
            drop(g);
            if wake {
                s.not_empty.notify_one();
            }
            if was_empty {
                if let Some((bell, token)) = &s.bell {
                    bell.ring(*token);
                }
            }
            return SendStatus::OK;
        }
        if s.overflow == Overflow::DROP_NEWEST {
            s.dropped.fetch_add(1, Ordering::Relaxed);
            return SendStatus::DROPPED;
        }
        g.waiting_senders += 1;
        let (ng, timed_out) = wait(&s.not_full, g, deadline);
        g = ng;
        g.waiting_senders -= 1;
        if timed_out {
            return SendStatus::FULL;
        }
    }
}

fn recv_with<F: FnOnce(&mut Inner)>(s: &QueueState, timeout_ms: u64, take: F) -> RecvStatus {
    let mut g = s.lock();
    let deadline = deadline(timeout_ms);
    loop {
        if !g.buf.is_empty() {
            take(&mut g);
            let wake = g.waiting_senders > 0;
            drop(g);
            if wake {
                s.not_full.notify_all();
            }
            return RecvStatus::OK;
        }
        if g.closed {
            return RecvStatus::CLOSED;
        }
        g.waiting_receivers += 1;
        let (ng, timed_out) = wait(&s.not_empty, g, deadline);
        g = ng;
        g.waiting_receivers -= 1;
        if timed_out && g.buf.is_empty() {
            return if g.closed { RecvStatus::CLOSED } else { RecvStatus::TIMEOUT };
        }
    }
}

unsafe extern "C" fn q_recv(p: *const c_void, timeout_ms: u64, out: &mut ROption<Message>) -> RecvStatus {
    // SAFETY: called through a handle that holds a reference to the queue.
    let s = unsafe { state(p) };
    recv_with(s, timeout_ms, |inner| take_front(inner, 1, |m| *out = ROption::RSome(m)))
}

unsafe extern "C" fn q_recv_batch(
    p: *const c_void,
    max: usize,
    timeout_ms: u64,
    out: &mut RVec<Message>,
) -> RecvStatus {
    // SAFETY: called through a handle that holds a reference to the queue.
    let s = unsafe { state(p) };
    recv_with(s, timeout_ms, |inner| {
        let n = max.max(1).min(inner.buf.len());
        take_front(inner, n, |m| out.push(m));
    })
}

unsafe extern "C" fn q_close(p: *const c_void) {
    // SAFETY: called through a handle that holds a reference to the queue.
    let s = unsafe { state(p) };
    s.lock().closed = true;
    s.not_empty.notify_all();
    s.not_full.notify_all();
    if let Some((bell, token)) = &s.bell {
        bell.ring(*token);
    }
}

unsafe extern "C" fn q_is_closed(p: *const c_void) -> bool {
    // SAFETY: called through a handle that holds a reference to the queue.
    unsafe { state(p) }.lock().closed
}

unsafe extern "C" fn q_len(p: *const c_void) -> usize {
    // SAFETY: called through a handle that holds a reference to the queue.
    unsafe { state(p) }.lock().buf.len()
}

unsafe extern "C" fn q_capacity(p: *const c_void) -> usize {
    // SAFETY: called through a handle that holds a reference to the queue.
    unsafe { state(p) }.capacity
}

unsafe extern "C" fn q_dropped(p: *const c_void) -> u64 {
    // SAFETY: called through a handle that holds a reference to the queue.
    unsafe { state(p) }.dropped.load(Ordering::Relaxed)
}

/// The table of queues made by this library.
static VTABLE: QueueVTable = QueueVTable {
    size: std::mem::size_of::<QueueVTable>(),
    retain: q_retain,
    release: q_release,
    send: q_send,
    recv: q_recv,
    recv_batch: q_recv_batch,
    close: q_close,
    is_closed: q_is_closed,
    len: q_len,
    capacity: q_capacity,
    dropped: q_dropped,
};

/// Settings of a new queue; see [`Queue::builder`].
#[must_use]
pub struct QueueBuilder {
    capacity: usize,
    overflow: Overflow,
    max_bytes: usize,
    bell: Option<(Arc<Doorbell>, u64)>,
}

impl QueueBuilder {
    /// What a full queue does with a new message (default: [`Overflow::BLOCK`]).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// Also full when the JSON of the held messages would exceed `max_bytes`
    /// (a single larger message still fits into an empty queue).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes.max(1);
        self
    }

    /// Rings `bell` with `token` whenever the queue turns from empty to
    /// non-empty, and when it is closed.
    pub fn doorbell(mut self, bell: Arc<Doorbell>, token: u64) -> Self {
        self.bell = Some((bell, token));
        self
    }

    /// Creates the queue.
    pub fn build(self) -> Queue {
        let st = Arc::new(QueueState {
            inner: Mutex::new(Inner {
                buf: VecDeque::with_capacity(self.capacity.clamp(1, 4096)),
                bytes: 0,
                closed: false,
                waiting_receivers: 0,
                waiting_senders: 0,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: self.capacity.max(1),
            max_bytes: self.max_bytes,
            overflow: self.overflow,
            dropped: AtomicU64::new(0),
            bell: self.bell,
        });
        Queue { state: Arc::into_raw(st) as *const c_void, vtable: &VTABLE as *const QueueVTable as *const c_void }
    }
}

/// Lets one thread wait for many queues at once, and for other file
/// descriptors beside them: queues built with [`QueueBuilder::doorbell`]
/// ring it with their token when they turn non-empty or are closed, which
/// makes [`Doorbell::fd`] readable until [`Doorbell::take`] is called.
///
/// A consumer takes the rung tokens and empties those queues; a queue it
/// leaves non-empty does not ring again, so the consumer keeps it in mind.
pub struct Doorbell {
    /// Tokens rung since the last `take`, and whether a byte is pending on
    /// the socket pair.
    rung: Mutex<(Vec<u64>, bool)>,
    reader: std::os::unix::net::UnixStream,
    writer: std::os::unix::net::UnixStream,
}

impl Doorbell {
    /// A new doorbell (a non-blocking socket pair inside).
    pub fn new() -> std::io::Result<Arc<Doorbell>> {
        let (reader, writer) = std::os::unix::net::UnixStream::pair()?;
        reader.set_nonblocking(true)?;
        writer.set_nonblocking(true)?;
        Ok(Arc::new(Doorbell { rung: Mutex::new((Vec::new(), false)), reader, writer }))
    }

    /// The descriptor to poll for readability.
    pub fn fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.reader)
    }

    /// Appends the tokens rung since the last call to `out` (a token may
    /// appear more than once) and makes [`Doorbell::fd`] unreadable again.
    pub fn take(&self, out: &mut Vec<u64>) {
        let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        out.append(&mut rung.0);
        if rung.1 {
            // `ring` writes one byte only while the flag is clear, so one
            // read empties the socket (a leftover byte would only cause one
            // spurious wake-up).
            let mut sink = [0u8; 64];
            while let Err(e) = std::io::Read::read(&mut &self.reader, &mut sink) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    break;
                }
            }
            rung.1 = false;
        }
    }

    /// Records `token` and makes the descriptor readable.
    pub fn ring(&self, token: u64) {
        let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
        rung.0.push(token);
        if !rung.1 {
            // A full socket buffer still leaves the descriptor readable.
            let _ = std::io::Write::write(&mut &self.writer, &[1]);
            rung.1 = true;
        }
    }
}

/// Why [`Queue::send`] did not enqueue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// Still full when the timeout passed.
    Full,
    /// The queue is closed.
    Closed,
    /// The queue drops new messages when full; this one was dropped.
    Dropped,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendError::Full => "queue full",
            SendError::Closed => "queue closed",
            SendError::Dropped => "queue full, message dropped",
        })
    }
}

impl std::error::Error for SendError {}

/// Outcome of a timed receive.
#[derive(Debug)]
pub enum Received {
    /// A message arrived.
    Message(Message),
    /// Nothing arrived in time.
    Timeout,
    /// The queue is closed and empty.
    Closed,
}

impl Queue {
    /// The creating library's table.
    fn table(&self) -> *const QueueVTable {
        self.vtable.cast::<QueueVTable>()
    }

    fn call_send(&self, msg: Message, timeout_ms: u64) -> SendStatus {
        // SAFETY: `vtable` is the creator's table, valid for the process and
        // holding every ABI 1.0 entry; `state` is alive while `self` is.
        unsafe { ((*self.table()).send)(self.state, msg, timeout_ms) }
    }

    fn call_recv(&self, timeout_ms: u64, out: &mut ROption<Message>) -> RecvStatus {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).recv)(self.state, timeout_ms, out) }
    }

    fn call_recv_batch(&self, max: usize, timeout_ms: u64, out: &mut RVec<Message>) -> RecvStatus {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).recv_batch)(self.state, max, timeout_ms, out) }
    }

    fn call_close(&self) {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).close)(self.state) }
    }

    fn call_is_closed(&self) -> bool {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).is_closed)(self.state) }
    }

    fn call_len(&self) -> usize {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).len)(self.state) }
    }

    fn call_capacity(&self) -> usize {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).capacity)(self.state) }
    }

    fn call_dropped(&self) -> u64 {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).dropped)(self.state) }
    }

    fn call_retain(&self) -> *const c_void {
        // SAFETY: as in `call_send`.
        unsafe { ((*self.table()).retain)(self.state) }
    }

    fn call_release(&self) {
        // SAFETY: as in `call_send`; called once per handle, from `Drop`.
        unsafe { ((*self.table()).release)(self.state) }
    }

    /// Creates a queue holding at most `capacity` messages (at least 1).
    pub fn bounded(capacity: usize, overflow: Overflow) -> Queue {
        Queue::builder(capacity).overflow(overflow).build()
    }

    /// Starts a queue of at most `capacity` messages (at least 1) with
    /// more settings: a bound in bytes, a [`Doorbell`].
    pub fn builder(capacity: usize) -> QueueBuilder {
        QueueBuilder { capacity, overflow: Overflow::BLOCK, max_bytes: usize::MAX, bell: None }
    }

    fn status_to_result(st: SendStatus) -> Result<(), SendError> {
        match st {
            SendStatus::OK => Ok(()),
            SendStatus::FULL => Err(SendError::Full),
            SendStatus::DROPPED => Err(SendError::Dropped),
            _ => Err(SendError::Closed),
        }
    }

    /// Enqueues a message. A `BLOCK` queue waits for space; a `DROP_NEWEST`
    /// queue drops the message when full and returns [`SendError::Dropped`].
    pub fn send(&self, msg: Message) -> Result<(), SendError> {
        Self::status_to_result(self.call_send(msg, FOREVER_MS))
    }

    /// Like [`Queue::send`] but waits at most `timeout` for space.
    pub fn send_timeout(&self, msg: Message, timeout: Duration) -> Result<(), SendError> {
        Self::status_to_result(self.call_send(msg, timeout.as_millis() as u64))
    }

    /// Like [`Queue::send`], but gives up on a `BLOCK` queue that stays
    /// full once `stop` is set (checked every 100 ms) and returns
    /// [`SendError::Full`]: for threads that must never hang a shutdown.
    pub fn send_or_stop(&self, msg: Message, stop: &AtomicBool) -> Result<(), SendError> {
        loop {
            match self.send_timeout(msg.clone(), Duration::from_millis(100)) {
                Err(SendError::Full) if !stop.load(Ordering::Relaxed) => continue,
                other => return other,
            }
        }
    }

    /// Enqueues without waiting.
    pub fn try_send(&self, msg: Message) -> Result<(), SendError> {
        Self::status_to_result(self.call_send(msg, 0))
    }

    /// Waits for a message; `None` once the queue is closed and empty.
    pub fn recv(&self) -> Option<Message> {
        let mut out = ROption::RNone;
        self.call_recv(FOREVER_MS, &mut out);
        out.into_option()
    }

    /// Waits at most `timeout` for a message.
    pub fn recv_timeout(&self, timeout: Duration) -> Received {
        let mut out = ROption::RNone;
        match self.call_recv(timeout.as_millis() as u64, &mut out) {
            RecvStatus::OK => match out.into_option() {
                Some(m) => Received::Message(m),
                None => Received::Timeout,
            },
            RecvStatus::TIMEOUT => Received::Timeout,
            _ => Received::Closed,
        }
    }

    /// Receives without waiting.
    pub fn try_recv(&self) -> Option<Message> {
        match self.recv_timeout(Duration::ZERO) {
            Received::Message(m) => Some(m),
            _ => None,
        }
    }

    /// Waits (at most `timeout`, or forever with `None`) for messages and
    /// appends up to `max` of them to `out`. Returns `false` once the queue
    /// is closed and empty.
    /// `out`'s allocation is handed to the queue and back (no copy, no new
    /// buffer), so a caller that reuses `out` allocates nothing per batch.
    pub fn recv_batch(&self, out: &mut Vec<Message>, max: usize, timeout: Option<Duration>) -> bool {
        out.reserve(max.min(1024));
        let mut buf = RVec::from(std::mem::take(out));
        let ms = timeout.map(|t| t.as_millis() as u64).unwrap_or(FOREVER_MS);
        let st = self.call_recv_batch(max, ms, &mut buf);
        *out = buf.into_vec();
        st != RecvStatus::CLOSED
    }

    /// Closes the queue: senders get [`SendError::Closed`], receivers drain
    /// what is left and then see the end. Wakes every waiter.
    pub fn close(&self) {
        self.call_close()
    }

    /// Whether [`Queue::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.call_is_closed()
    }

    /// Number of messages waiting.
    pub fn len(&self) -> usize {
        self.call_len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Maximum number of waiting messages.
    pub fn capacity(&self) -> usize {
        self.call_capacity()
    }

    /// Whether a send never waits for room in this queue itself: true for
    /// a direct queue ([`Queue::direct`], capacity `usize::MAX`) and for
    /// handles over one, such as the `inq` the host gives apps when a
    /// backbone routes on the sender's thread. Such a send may still wait
    /// briefly for a lossless subscriber queue, but a full `inq` can never
    /// hold up the sending thread's other work.
    pub fn never_full(&self) -> bool {
        self.capacity() == usize::MAX
    }

    /// How many messages this queue dropped because it was full.
    pub fn dropped(&self) -> u64 {
        self.call_dropped()
    }

    /// Identity of the underlying queue: equal for all clones.
    pub fn id(&self) -> usize {
        self.state as usize
    }
}

// ---------------------------------------------------------------------------
// Counting handles
// ---------------------------------------------------------------------------

/// Number of [`MessageKind`](crate::MessageKind) values that
/// [`SendCounts`] tells apart; kinds at or above it are counted in the
/// last slot.
pub const COUNTED_KINDS: usize = 8;

/// Counts of what was sent through the handles of [`Queue::counting`], by
/// message kind: lock-free, one atomic add per send.
#[derive(Default)]
pub struct SendCounts {
    sent: [AtomicU64; COUNTED_KINDS],
    dropped: [AtomicU64; COUNTED_KINDS],
    refused: [AtomicU64; COUNTED_KINDS],
}

impl SendCounts {
    /// New zero counts, to share between handles.
    pub fn new() -> Arc<SendCounts> {
        Arc::new(SendCounts::default())
    }

    fn slot(kind: crate::MessageKind) -> usize {
        (kind.0 as usize).min(COUNTED_KINDS - 1)
    }

    /// Messages of `kind` the queue accepted.
    pub fn sent(&self, kind: crate::MessageKind) -> u64 {
        self.sent[Self::slot(kind)].load(Ordering::Relaxed)
    }

    /// Messages of `kind` a full `DROP_NEWEST` queue dropped.
    pub fn dropped(&self, kind: crate::MessageKind) -> u64 {
        self.dropped[Self::slot(kind)].load(Ordering::Relaxed)
    }

    /// Messages of `kind` not taken because the queue was closed, or full
    /// until the sender's timeout.
    pub fn refused(&self, kind: crate::MessageKind) -> u64 {
        self.refused[Self::slot(kind)].load(Ordering::Relaxed)
    }

    fn count(&self, kind: crate::MessageKind, status: SendStatus) {
        let slot = Self::slot(kind);
        let counter = match status {
            SendStatus::OK => &self.sent[slot],
            SendStatus::DROPPED => &self.dropped[slot],
            _ => &self.refused[slot],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The state behind a counting handle: the queue it forwards to and the
/// counts it adds to.
struct CountingState {
    inner: Queue,
    counts: Arc<SendCounts>,
}

/// # Safety
/// `p` must be the state of a live handle made by [`Queue::counting`].
unsafe fn counting<'a>(p: *const c_void) -> &'a CountingState {
    // SAFETY: the caller's promise; the handle holds a reference.
    unsafe { &*(p as *const CountingState) }
}

unsafe extern "C" fn c_retain(p: *const c_void) -> *const c_void {
    // SAFETY: `p` came from Arc::into_raw in `Queue::counting` and is alive.
    unsafe { Arc::increment_strong_count(p as *const CountingState) };
    p
}

unsafe extern "C" fn c_release(p: *const c_void) {
    // SAFETY: balanced with `Arc::into_raw` / `c_retain`.
    unsafe { drop(Arc::from_raw(p as *const CountingState)) };
}

unsafe extern "C" fn c_send(p: *const c_void, msg: Message, timeout_ms: u64) -> SendStatus {
    // SAFETY: called through a handle that holds a reference to the state.
    let s = unsafe { counting(p) };
    let kind = msg.kind();
    let status = s.inner.call_send(msg, timeout_ms);
    s.counts.count(kind, status);
    status
}

unsafe extern "C" fn c_recv(p: *const c_void, timeout_ms: u64, out: &mut ROption<Message>) -> RecvStatus {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_recv(timeout_ms, out)
}

unsafe extern "C" fn c_recv_batch(
    p: *const c_void,
    max: usize,
    timeout_ms: u64,
    out: &mut RVec<Message>,
) -> RecvStatus {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_recv_batch(max, timeout_ms, out)
}

unsafe extern "C" fn c_close(p: *const c_void) {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_close()
}

unsafe extern "C" fn c_is_closed(p: *const c_void) -> bool {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_is_closed()
}

unsafe extern "C" fn c_len(p: *const c_void) -> usize {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_len()
}

unsafe extern "C" fn c_capacity(p: *const c_void) -> usize {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_capacity()
}

unsafe extern "C" fn c_dropped(p: *const c_void) -> u64 {
    // SAFETY: as in `c_send`.
    unsafe { counting(p) }.inner.call_dropped()
}

/// The table of counting handles made by this library.
static COUNTING_VTABLE: QueueVTable = QueueVTable {
    size: std::mem::size_of::<QueueVTable>(),
    retain: c_retain,
    release: c_release,
    send: c_send,
    recv: c_recv,
    recv_batch: c_recv_batch,
    close: c_close,
    is_closed: c_is_closed,
    len: c_len,
    capacity: c_capacity,
    dropped: c_dropped,
};

impl Queue {
    /// A handle to the same queue that also adds every send's outcome to
    /// `counts`. It is a queue of its own identity ([`Queue::id`]): hand
    /// the same handle to everyone who must see one queue.
    pub fn counting(&self, counts: Arc<SendCounts>) -> Queue {
        let st = Arc::new(CountingState { inner: self.clone(), counts });
        Queue {
            state: Arc::into_raw(st) as *const c_void,
            vtable: &COUNTING_VTABLE as *const QueueVTable as *const c_void,
        }
    }
}

impl Clone for Queue {
    fn clone(&self) -> Self {
        Queue { state: self.call_retain(), vtable: self.vtable }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.call_release()
    }
}

impl PartialEq for Queue {
    fn eq(&self, other: &Self) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Queue {}

impl std::hash::Hash for Queue {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.id().hash(h)
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Queue({:#x}, {}/{})", self.id(), self.len(), self.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MessageKind;
    use std::thread;

    fn msg(n: u32) -> Message {
        Message::from_validated_json(MessageKind::INDICATOR, format!("{{\"n\": {n}}}"))
    }

    #[test]
    fn byte_bound_drops_newest_and_frees_on_receive() {
        // Each message is 10 bytes of JSON: `{"n": 1}` padded below.
        let m = |n: u32| Message::from_validated_json(MessageKind::INDICATOR, format!("{{\"n\": {n:>3}}}"));
        assert_eq!(m(1).json().len(), 10);
        let q = Queue::builder(100).overflow(Overflow::DROP_NEWEST).max_bytes(25).build();
        q.send(m(1)).unwrap();
        q.send(m(2)).unwrap();
        assert_eq!(q.send(m(3)), Err(SendError::Dropped), "30 bytes exceed the bound of 25");
        assert_eq!(q.dropped(), 1);
        assert_eq!(q.recv().unwrap().json(), m(1).json());
        q.send(m(4)).unwrap();
        assert_eq!(q.len(), 2);
        // A message larger than the bound fits into an empty queue only.
        let big = Message::from_validated_json(MessageKind::INDICATOR, format!("\"{}\"", "x".repeat(40)));
        assert_eq!(q.send(big.clone()), Err(SendError::Dropped));
        let mut out = Vec::new();
        assert!(q.recv_batch(&mut out, 10, Some(Duration::ZERO)));
        assert_eq!(out.len(), 2);
        q.send(big).unwrap();
        assert_eq!(q.dropped(), 2);
    }

    #[test]
    fn doorbell_rings_once_per_empty_to_non_empty_and_on_close() {
        let bell = Doorbell::new().unwrap();
        let a = Queue::builder(10).doorbell(bell.clone(), 7).build();
        let b = Queue::builder(10).doorbell(bell.clone(), 8).build();
        let readable = |bell: &Doorbell| fd_readable(bell.fd());
        assert!(!readable(&bell));
        a.send(msg(1)).unwrap();
        a.send(msg(2)).unwrap();
        b.send(msg(3)).unwrap();
        assert!(readable(&bell));
        let mut rung = Vec::new();
        bell.take(&mut rung);
        assert_eq!(rung, [7, 8], "a second message into a non-empty queue does not ring");
        assert!(!readable(&bell));
        a.send(msg(4)).unwrap();
        bell.take(&mut rung);
        assert_eq!(rung, [7, 8], "a is still non-empty: no new ring");
        let mut out = Vec::new();
        a.recv_batch(&mut out, 10, Some(Duration::ZERO));
        a.send(msg(5)).unwrap();
        b.close();
        rung.clear();
        bell.take(&mut rung);
        assert_eq!(rung, [7, 8]);
        assert!(!readable(&bell), "one take empties the descriptor");
    }

    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }

    extern "C" {
        fn poll(fds: *mut PollFd, n: u64, timeout_ms: i32) -> i32;
    }

    /// Whether `fd` is readable right now.
    fn fd_readable(fd: i32) -> bool {
        let mut p = PollFd { fd, events: 1, revents: 0 };
        // SAFETY: one valid, exclusively borrowed pollfd; timeout 0.
        let n = unsafe { poll(&mut p, 1, 0) };
        n == 1 && p.revents & 1 != 0
    }

    #[test]
    fn fifo_and_bounded_with_timeout() {
        let q = Queue::bounded(2, Overflow::BLOCK);
        q.send(msg(1)).unwrap();
        q.send(msg(2)).unwrap();
        assert_eq!(q.send_timeout(msg(3), Duration::from_millis(10)), Err(SendError::Full));
        assert_eq!(q.try_send(msg(3)), Err(SendError::Full));
        assert_eq!(q.len(), 2);
        assert_eq!(q.recv().unwrap().json(), "{\"n\": 1}");
        assert_eq!(q.recv().unwrap().json(), "{\"n\": 2}");
        assert!(matches!(q.recv_timeout(Duration::from_millis(10)), Received::Timeout));
    }

    #[test]
    fn drop_newest_counts_drops() {
        let q = Queue::bounded(1, Overflow::DROP_NEWEST);
        q.send(msg(1)).unwrap();
        assert_eq!(q.send(msg(2)), Err(SendError::Dropped));
        assert_eq!(q.send(msg(3)), Err(SendError::Dropped));
        assert_eq!(q.dropped(), 2);
        assert_eq!(q.recv().unwrap().json(), "{\"n\": 1}");
    }

    /// (blocked receivers, blocked senders) of a queue made here.
    fn waiters(q: &Queue) -> (usize, usize) {
        // SAFETY: `q` is a live queue made by `Queue::bounded` in this crate.
        let inner = unsafe { state(q.state) }.lock();
        (inner.waiting_receivers, inner.waiting_senders)
    }

    /// Waits (without a timed sleep) until `ready` holds for `q`'s waiters.
    fn wait_for_waiters(q: &Queue, ready: impl Fn((usize, usize)) -> bool) {
        while !ready(waiters(q)) {
            thread::yield_now();
        }
    }

    #[test]
    fn close_wakes_blocked_receiver_and_sender() {
        let q = Queue::bounded(1, Overflow::BLOCK);
        let r = q.clone();
        let receiver = thread::spawn(move || r.recv());
        let q2 = q.clone();
        let full = Queue::bounded(1, Overflow::BLOCK);
        full.send(msg(0)).unwrap();
        let f2 = full.clone();
        let sender = thread::spawn(move || f2.send(msg(1)));
        wait_for_waiters(&q, |(receivers, _)| receivers == 1);
        wait_for_waiters(&full, |(_, senders)| senders == 1);
        q2.close();
        full.close();
        assert!(receiver.join().unwrap().is_none(), "closed empty queue ends recv");
        assert_eq!(sender.join().unwrap(), Err(SendError::Closed));
        assert_eq!(q.send(msg(2)), Err(SendError::Closed));
    }

    #[test]
    fn receivers_drain_after_close() {
        let q = Queue::bounded(4, Overflow::BLOCK);
        q.send(msg(1)).unwrap();
        q.send(msg(2)).unwrap();
        q.close();
        let mut out = Vec::new();
        assert!(q.recv_batch(&mut out, 10, None));
        assert_eq!(out.len(), 2);
        assert!(!q.recv_batch(&mut out, 10, None), "closed and empty");
        assert!(matches!(q.recv_timeout(Duration::from_millis(1)), Received::Closed));
    }

    #[test]
    fn clones_share_identity_and_messages_share_bodies() {
        let q = Queue::bounded(4, Overflow::BLOCK);
        let c = q.clone();
        assert_eq!(q, c);
        assert_ne!(q, Queue::bounded(4, Overflow::BLOCK));
        let m = msg(7);
        q.send(m.clone()).unwrap();
        let got = c.recv().unwrap();
        assert!(got.shares_body_with(&m), "fan-out must not copy bodies");
    }

    #[test]
    fn many_producers_one_consumer_lose_nothing() {
        let q = Queue::bounded(16, Overflow::BLOCK);
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    for i in 0..1000 {
                        q.send(msg(p * 1000 + i)).unwrap();
                    }
                })
            })
            .collect();
        let mut seen = 0;
        let mut out = Vec::new();
        while seen < 4000 {
            out.clear();
            assert!(q.recv_batch(&mut out, 64, None));
            seen += out.len();
        }
        for p in producers {
            p.join().unwrap();
        }
        assert_eq!(seen, 4000);
        assert!(q.is_empty());
    }

    /// Blocked senders and receivers on a tiny queue: every wake-up must
    /// reach a waiter (no lost wake-ups with the waiter counts).
    #[test]
    fn many_producers_many_consumers_on_a_tiny_queue() {
        let q = Queue::bounded(2, Overflow::BLOCK);
        let producers: Vec<_> = (0..3)
            .map(|p| {
                let q = q.clone();
                thread::spawn(move || {
                    for i in 0..2000 {
                        q.send(msg(p * 2000 + i)).unwrap();
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || {
                    let mut n = 0usize;
                    while q.recv().is_some() {
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        for p in producers {
            p.join().unwrap();
        }
        // Receivers drain what is left after the close.
        q.close();
        let total: usize = consumers.into_iter().map(|c| c.join().unwrap()).sum();
        assert_eq!(total, 6000);
    }

    #[test]
    fn send_or_stop_waits_for_room_and_gives_up_when_stopping() {
        let q = Queue::bounded(1, Overflow::BLOCK);
        q.send(msg(1)).unwrap();
        let stop = AtomicBool::new(false);
        let r = q.clone();
        let taker = thread::spawn(move || {
            // Take a message only once the sender is blocked on the full queue.
            wait_for_waiters(&r, |(_, senders)| senders == 1);
            r.recv()
        });
        q.send_or_stop(msg(2), &stop).unwrap();
        assert_eq!(taker.join().unwrap().unwrap().json(), "{\"n\": 1}");
        stop.store(true, Ordering::Relaxed);
        assert_eq!(q.send_or_stop(msg(3), &stop), Err(SendError::Full));
        q.close();
        assert_eq!(q.send_or_stop(msg(4), &stop), Err(SendError::Closed));
    }
}
