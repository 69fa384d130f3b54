//! The synchronisation primitives of the cache: std's in normal builds, loom's under
//! `cfg(loom)`, so the models in `tests/loom.rs` explore the interleavings of the real code
//! rather than of a copy. Nothing in the crate may reach for `std::sync` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
/// loom's `try_read` and `try_write` return std's error type.
pub(crate) use std::sync::TryLockError;

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

/// Atomics that order no memory and guard no invariant: statistics counters (the hit
/// counter's stripes too) and the S3-FIFO access counts (a stale count changes which page is evicted, never whether
/// eviction is allowed). They stay std's under loom so the models do not branch on them.
pub(crate) mod unmodeled {
    pub(crate) use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize};
}

const POISONED: &str = "page cache lock poisoned: a panic happened while it was held";

/// Locks a mutex. Poisoning means a panic while the lock was held; the cache runs no caller
/// code under its shard and load-cell locks except the eviction predicate and `K`'s
/// `Hash`/`Eq`, so a poisoned lock is a bug and we stop loudly rather than serve state
/// that may be half-updated.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect(POISONED)
}

/// Read-locks a shard (same poisoning argument as `lock`).
pub(crate) fn read<T>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    rwlock.read().expect(POISONED)
}

/// Write-locks a shard (same poisoning argument as `lock`).
pub(crate) fn write<T>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    rwlock.write().expect(POISONED)
}
