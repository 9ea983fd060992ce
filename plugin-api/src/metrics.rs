//! Counters and gauges a plugin reports to the host's metrics (ABI 1.1).
//!
//! Register each metric once, when the plugin starts, with
//! [`Host::counter`](crate::Host::counter) or [`Host::gauge`](crate::Host::gauge);
//! updating it is then one atomic operation on memory the host reads when
//! it is scraped: no call across the boundary, no lock. The host exposes it
//! as `threatbus_<name>` with a `plugin` label besides the given labels
//! (counters with the suffix `_total`).
//!
//! Rules the host enforces (a broken one is logged as a warning and the
//! metric is not exposed; the plugin keeps working):
//! * names match `[a-z][a-z0-9_]*`, at most 64 bytes, and a counter's name
//!   does not end in `_total`;
//! * help texts are one line of at most 200 bytes;
//! * at most 4 labels, names `[a-z][a-z0-9_]*` other than `plugin`, values
//!   at most 128 bytes; every series of one name has the same label names;
//! * at most 1,000 series per plugin.
//!
//! A host of ABI 1.0 has no metrics: the calls return working but detached
//! values, so a plugin needs no second code path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A value that only grows (messages sent, reconnects). Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Counter(&'static AtomicU64);

impl Counter {
    /// A counter nobody exposes (what a host without metrics gives).
    pub fn detached() -> Counter {
        Counter(Box::leak(Box::new(AtomicU64::new(0))))
    }

    /// Wraps a value the host returned.
    ///
    /// # Safety
    /// `cell` must point to an `AtomicU64` that lives for the process.
    pub(crate) unsafe fn from_cell(cell: *const std::ffi::c_void) -> Counter {
        // SAFETY: the caller's promise.
        Counter(unsafe { &*cell.cast::<AtomicU64>() })
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1)
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (subscriptions, queue depth). Cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Gauge(&'static AtomicI64);

impl Gauge {
    /// A gauge nobody exposes (what a host without metrics gives).
    pub fn detached() -> Gauge {
        Gauge(Box::leak(Box::new(AtomicI64::new(0))))
    }

    /// Wraps a value the host returned.
    ///
    /// # Safety
    /// `cell` must point to an `AtomicI64` that lives for the process.
    pub(crate) unsafe fn from_cell(cell: *const std::ffi::c_void) -> Gauge {
        // SAFETY: the caller's promise.
        Gauge(unsafe { &*cell.cast::<AtomicI64>() })
    }

    /// Sets the value.
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1)
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1)
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}
