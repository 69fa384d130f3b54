//! A hit counter that two threads hitting the same shard do not share: one cache line per
//! stripe, each thread adding to its own stripe. A per-shard counter was the one write to
//! a shared line left on the hit path besides the locks (every hit of every thread to the
//! shard bounced it between cores).

use crate::sync::unmodeled::{AtomicU64, AtomicUsize};

/// Stripes per cache: a power of two, more than the cores of the machines sixfold runs
/// on, so threads rarely share one (sharing only costs speed, never a count: the adds are
/// atomic).
const STRIPES: usize = 16;

/// Hands each thread its stripe, round robin in the order threads first count a hit.
static NEXT_STRIPE: AtomicUsize = AtomicUsize::new(0);

std::thread_local! {
    static STRIPE: usize = NEXT_STRIPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES;
}

/// One stripe on its own 128 bytes (two lines: Intel's adjacent-line prefetcher moves
/// pairs).
#[derive(Default)]
#[repr(align(128))]
struct Stripe(AtomicU64);

/// A counter summed over its stripes; a statistics counter (orders no memory).
pub(crate) struct StripedCounter {
    stripes: Box<[Stripe]>,
}

impl Default for StripedCounter {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Stripe::default()).collect(),
        }
    }
}

impl StripedCounter {
    /// Adds one on the calling thread's stripe.
    #[inline]
    pub(crate) fn increment(&self) {
        let stripe = STRIPE.with(|stripe| *stripe);
        self.stripes[stripe]
            .0
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The sum of the stripes; under concurrent adds, not one instant's value.
    pub(crate) fn get(&self) -> u64 {
        self.stripes
            .iter()
            .map(|stripe| stripe.0.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}
