//! Mutants for `tests/loom.rs`: each one removes a guard the loom models exist to check.
//! Compiled only with `--cfg loom_mutant`; a mutant test picks its mutant with [`set`]
//! before running its model, so one build runs them all. loom runs a model's threads on
//! the calling OS thread, so a thread-local selects the mutant for that test only.

/// A guard the mutant drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// Eviction from the probationary (small) queue ignores pins.
    SmallQueueIgnoresPins,
    /// Eviction from the main queue ignores pins.
    MainQueueIgnoresPins,
    /// Eviction from the probationary queue ignores the predicate (R6 for the writer).
    SmallQueueIgnoresPredicate,
    /// Eviction from the main queue ignores the predicate.
    MainQueueIgnoresPredicate,
    /// K2: the unpinned read path (`with_page`) reads the bytes without checking the
    /// writer's mark, so it may read while redo writes.
    UnpinnedReadIgnoresWriters,
    /// K2: a writer (redo, an install over the page) writes without the shard barrier, so
    /// an unpinned reader that entered the shard before the mark may still be reading.
    WriterSkipsBarrier,
}

#[cfg(loom_mutant)]
std::thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutant>> = const { std::cell::Cell::new(None) };
}

/// Selects the mutant for the calling thread (and the loom models it runs).
#[cfg(loom_mutant)]
pub fn set(mutant: Option<Mutant>) {
    ACTIVE.with(|active| active.set(mutant));
}

#[cfg(loom_mutant)]
pub(crate) fn active(mutant: Mutant) -> bool {
    ACTIVE.with(|active| active.get()) == Some(mutant)
}

/// Without `loom_mutant` no mutant exists, and the check folds away.
#[cfg(not(loom_mutant))]
#[inline(always)]
pub(crate) fn active(_mutant: Mutant) -> bool {
    false
}
