//! The synchronisation primitives of the cache: std's in normal builds, loom's under
//! `cfg(loom)`, so the models in `tests/loom.rs` explore the interleavings of the real code
//! rather than of a copy. Nothing in the crate may reach for `std::sync` directly.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};

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

/// A page's bytes: an `UnsafeCell` whose readers take no lock of their own (K2). loom's
/// cell under `cfg(loom)`, which checks every access against the others and panics on a
/// pair not ordered by happens-before: the models then prove the K2 protocol race-free.
pub(crate) struct PageBytes<B: ?Sized> {
    #[cfg(loom)]
    cell: loom::cell::UnsafeCell<B>,
    #[cfg(not(loom))]
    cell: std::cell::UnsafeCell<B>,
}

// SAFETY: the cell is accessed only through `read` and `write`, whose callers (the page
// entry, `entry.rs`) follow K2: a write holds the page's write lock and runs only after
// every reader without that lock has left (the shard barrier), so no access of one thread
// overlaps a write of another. Under loom that claim is checked, not assumed.
unsafe impl<B: ?Sized + Send + Sync> Sync for PageBytes<B> {}

impl<B> PageBytes<B> {
    pub(crate) fn new(bytes: B) -> Self {
        Self {
            #[cfg(loom)]
            cell: loom::cell::UnsafeCell::new(bytes),
            #[cfg(not(loom))]
            cell: std::cell::UnsafeCell::new(bytes),
        }
    }
}

impl<B: ?Sized> PageBytes<B> {
    /// The bytes of an entry nobody else can reach yet.
    pub(crate) fn exclusive(&mut self) -> &mut B {
        #[cfg(loom)]
        // SAFETY: `&mut self`: no other access exists.
        return self.cell.with_mut(|bytes| unsafe { &mut *bytes });
        #[cfg(not(loom))]
        return self.cell.get_mut();
    }

    /// A read of the bytes, tracked by loom while the returned value lives.
    ///
    /// # Safety
    /// No write may overlap the returned value's life (K2: hold the page's read lock, or
    /// the shard's read lock having found the page not being written).
    #[inline]
    pub(crate) unsafe fn read(&self) -> BytesRef<'_, B> {
        BytesRef {
            #[cfg(loom)]
            ptr: self.cell.get(),
            #[cfg(not(loom))]
            // SAFETY: the caller's contract.
            bytes: unsafe { &*self.cell.get() },
            _cell: std::marker::PhantomData,
        }
    }

    /// A write of the bytes, tracked by loom while the returned value lives.
    ///
    /// # Safety
    /// No other access may overlap the returned value's life (K2: hold the page's write
    /// lock, after the shard barrier).
    pub(crate) unsafe fn write(&self) -> BytesMut<'_, B> {
        BytesMut {
            #[cfg(loom)]
            ptr: self.cell.get_mut(),
            #[cfg(not(loom))]
            // SAFETY: the caller's contract.
            bytes: unsafe { &mut *self.cell.get() },
            _cell: std::marker::PhantomData,
        }
    }
}

/// A read access to a page's bytes (see `PageBytes::read`).
pub(crate) struct BytesRef<'a, B: ?Sized> {
    #[cfg(loom)]
    ptr: loom::cell::ConstPtr<B>,
    #[cfg(not(loom))]
    bytes: &'a B,
    _cell: std::marker::PhantomData<&'a B>,
}

impl<B: ?Sized> std::ops::Deref for BytesRef<'_, B> {
    type Target = B;

    #[inline]
    fn deref(&self) -> &B {
        #[cfg(loom)]
        // SAFETY: `PageBytes::read`'s contract covers this value's whole life.
        return unsafe { self.ptr.deref() };
        #[cfg(not(loom))]
        return self.bytes;
    }
}

/// A write access to a page's bytes (see `PageBytes::write`).
pub(crate) struct BytesMut<'a, B: ?Sized> {
    #[cfg(loom)]
    ptr: loom::cell::MutPtr<B>,
    #[cfg(not(loom))]
    bytes: &'a mut B,
    _cell: std::marker::PhantomData<&'a B>,
}

impl<B: ?Sized> std::ops::Deref for BytesMut<'_, B> {
    type Target = B;

    fn deref(&self) -> &B {
        #[cfg(loom)]
        // SAFETY: `PageBytes::write`'s contract covers this value's whole life.
        return unsafe { self.ptr.deref() };
        #[cfg(not(loom))]
        return self.bytes;
    }
}

impl<B: ?Sized> std::ops::DerefMut for BytesMut<'_, B> {
    fn deref_mut(&mut self) -> &mut B {
        #[cfg(loom)]
        // SAFETY: `PageBytes::write`'s contract covers this value's whole life.
        return unsafe { self.ptr.deref() };
        #[cfg(not(loom))]
        return self.bytes;
    }
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
