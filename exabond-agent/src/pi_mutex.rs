//! A mutex with priority inheritance (`PTHREAD_PRIO_INHERIT`, a PI futex in the kernel).
//!
//! The eBPF event waiters are `SCHED_FIFO`; the agent's other threads (rtnetlink, the poll, the control
//! socket) are normal threads that lock the same publisher. With a plain mutex, a normal thread preempted
//! while holding it makes the real-time waiter sleep behind every other normal thread on that CPU
//! (priority inversion: a failover published milliseconds late). With priority inheritance the holder runs
//! at the waiter's priority until it unlocks, so the wait is only the rest of its critical section.

use std::cell::UnsafeCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

/// A lock's place in the agent's lock order (the order is written in `shared.rs`, where the locks are): a
/// thread that holds a ranked lock may only take locks of a higher rank. Debug builds check it at every
/// [`PiMutex::lock`] and panic, naming both locks, when the order is broken (or a thread locks the same
/// mutex twice, which would deadlock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockRank {
    level: u8,
    name: &'static str,
}

impl LockRank {
    /// Not in the order: never checked (test mutexes, locks that are never held with another).
    pub const UNRANKED: Self = Self { level: 0, name: "unranked" };

    /// Rank `level` (1 = taken first, up to 63), `name` for the messages.
    ///
    /// # Panics
    /// If `level` is not in 1..=63 (at compile time when used in a constant).
    #[must_use]
    pub const fn new(level: u8, name: &'static str) -> Self {
        assert!(level >= 1 && level <= 63, "lock ranks are 1..=63");
        Self { level, name }
    }
}

/// The ranks of the ranked locks this thread holds (debug builds only).
#[cfg(debug_assertions)]
mod held {
    use std::cell::{Cell, RefCell};

    use super::LockRank;

    thread_local! {
        /// Bit `level` is set while this thread holds a lock of that rank.
        static LEVELS: Cell<u64> = const { Cell::new(0) };
        /// The name of the lock held at each level, for the message.
        static NAMES: RefCell<[&'static str; 64]> = const { RefCell::new([""; 64]) };
    }

    /// About to take a lock of rank `r`: panic if this thread holds one of rank `r` or higher.
    pub fn check(r: LockRank) {
        if r.level == 0 {
            return;
        }
        let levels = LEVELS.with(Cell::get);
        let at_or_above = levels >> r.level;
        if at_or_above != 0 {
            let level = r.level + u8::try_from(at_or_above.ilog2()).unwrap_or(0);
            let holding = NAMES.with(|n| n.borrow()[usize::from(level)]);
            panic!(
                "lock order broken: taking `{}` (rank {}) while holding `{holding}` (rank {level}); see the lock \
                 order in shared.rs",
                r.name, r.level
            );
        }
    }

    /// A lock of rank `r` was taken.
    pub fn take(r: LockRank) {
        if r.level != 0 {
            LEVELS.with(|l| l.set(l.get() | 1 << r.level));
            NAMES.with(|n| n.borrow_mut()[usize::from(r.level)] = r.name);
        }
    }

    /// A lock of rank `r` was released.
    pub fn release(r: LockRank) {
        if r.level != 0 {
            LEVELS.with(|l| l.set(l.get() & !(1 << r.level)));
        }
    }

    /// Whether this thread holds a lock of rank `r`.
    pub fn holds(r: LockRank) -> bool {
        r.level != 0 && LEVELS.with(Cell::get) & 1 << r.level != 0
    }
}

/// Whether this thread holds a lock of rank `r` (debug builds; always false in release builds, where ranks are
/// not tracked). For debug assertions such as "nothing is logged under the publisher lock".
#[must_use]
pub fn holds(r: LockRank) -> bool {
    #[cfg(debug_assertions)]
    let held = held::holds(r);
    #[cfg(not(debug_assertions))]
    let held = {
        let _ = r;
        false
    };
    held
}

/// A priority-inheritance mutex around a `T`. Not poisoned by a panic: the guard unlocks while unwinding
/// and every critical section of the agent leaves its state consistent.
pub struct PiMutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    rank: LockRank,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by the mutex; `T: Send` moves between threads with the lock.
unsafe impl<T: Send> Send for PiMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for PiMutex<T> {}

impl<T> PiMutex<T> {
    /// A new, unlocked mutex outside the lock order ([`LockRank::UNRANKED`]).
    ///
    /// # Panics
    /// If the C library refuses a priority-inheritance mutex (it never does on Linux/glibc or musl).
    pub fn new(value: T) -> Self {
        Self::with_rank(value, LockRank::UNRANKED)
    }

    /// A new, unlocked mutex at `rank` in the lock order.
    ///
    /// # Panics
    /// As [`PiMutex::new`].
    pub fn with_rank(value: T, rank: LockRank) -> Self {
        // SAFETY: all-zero is a valid bit pattern for these plain C structs before their init calls.
        let raw = Box::new(UnsafeCell::new(unsafe { std::mem::zeroed::<libc::pthread_mutex_t>() }));
        // SAFETY: as above.
        let mut attr: libc::pthread_mutexattr_t = unsafe { std::mem::zeroed() };
        // SAFETY: `attr` is ours and initialised by the first call before the others use it; `raw` is
        // boxed, so the mutex never moves after pthread_mutex_init.
        let rc = unsafe {
            let mut rc = libc::pthread_mutexattr_init(&raw mut attr);
            if rc == 0 {
                rc = libc::pthread_mutexattr_setprotocol(&raw mut attr, libc::PTHREAD_PRIO_INHERIT);
            }
            if rc == 0 {
                rc = libc::pthread_mutex_init(raw.get(), &raw const attr);
            }
            libc::pthread_mutexattr_destroy(&raw mut attr);
            rc
        };
        assert_eq!(rc, 0, "pthread_mutex_init(PTHREAD_PRIO_INHERIT) failed: errno {rc}");
        Self { raw, rank, data: UnsafeCell::new(value) }
    }

    /// Lock, blocking (and lending this thread's priority to the holder) until it is free.
    ///
    /// # Panics
    /// If the C library reports an error (EDEADLK: this thread already holds it); in debug builds, if this
    /// thread holds a lock of this rank or a higher one (the lock order, see [`LockRank`]).
    pub fn lock(&self) -> PiMutexGuard<'_, T> {
        #[cfg(debug_assertions)]
        held::check(self.rank);
        // SAFETY: an initialised mutex that lives as long as `self`.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        assert_eq!(rc, 0, "pthread_mutex_lock failed: errno {rc}");
        #[cfg(debug_assertions)]
        held::take(self.rank);
        PiMutexGuard { m: self, _not_send: PhantomData }
    }
}

impl<T> Drop for PiMutex<T> {
    fn drop(&mut self) {
        // SAFETY: unlocked (no guard can outlive `self`) and never used again.
        unsafe { libc::pthread_mutex_destroy(self.raw.get()) };
    }
}

impl<T: Default> Default for PiMutex<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

/// Access to the value while the lock is held; unlocks on drop.
///
/// Not `Send` (like std's `MutexGuard`): a pthread mutex must be unlocked by the thread that locked it (a PI
/// mutex unlocked elsewhere fails with EPERM and stays locked), so a guard can neither move to another thread
/// nor live across an `.await` in a task that may resume on another worker thread.
pub struct PiMutexGuard<'a, T> {
    m: &'a PiMutex<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for PiMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held, so no other reference to the data exists.
        unsafe { &*self.m.data.get() }
    }
}

impl<T> DerefMut for PiMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and this guard is borrowed mutably.
        unsafe { &mut *self.m.data.get() }
    }
}

impl<T> Drop for PiMutexGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: this thread holds the lock (taken in `lock`; the guard cannot leave the thread).
        let rc = unsafe { libc::pthread_mutex_unlock(self.m.raw.get()) };
        #[cfg(debug_assertions)]
        held::release(self.m.rank);
        if rc != 0 {
            // The mutex may still be locked: every later `lock` would hang. Stop here, loudly.
            let msg = format!("pthread_mutex_unlock failed: errno {rc}");
            if std::thread::panicking() {
                eprintln!("exabond: {msg}; aborting");
                std::process::abort();
            }
            panic!("{msg}");
        }
    }
}

/// Compile-time proof that [`PiMutexGuard`] is not `Send` (the `static_assertions::assert_not_impl_any`
/// trick, without the crate): if it were, both impls of `AmbiguousIfSend` would apply to it and the
/// constant below would not compile (type annotations needed).
mod guard_is_not_send {
    use super::PiMutexGuard;

    trait AmbiguousIfSend<A> {
        fn some_item() {}
    }
    impl<T: ?Sized> AmbiguousIfSend<()> for T {}
    struct Invalid;
    impl<T: ?Sized + Send> AmbiguousIfSend<Invalid> for T {}

    const _: fn() = || {
        let _ = <PiMutexGuard<'static, u8> as AmbiguousIfSend<_>>::some_item;
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn excludes_and_counts() {
        let m = Arc::new(PiMutex::new(0u64));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        // A non-atomic read-modify-write: lost updates would show without exclusion.
                        let mut g = m.lock();
                        let v = *g;
                        std::hint::black_box(&v);
                        *g = v + 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*m.lock(), 40_000);
    }

    #[test]
    fn unlocks_when_a_holder_panics() {
        let m = Arc::new(PiMutex::new(1u32));
        let m2 = m.clone();
        let r = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("while holding the lock");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*m.lock(), 1, "the lock is free again and the value intact");
    }

    #[test]
    #[cfg(debug_assertions)]
    fn lock_order_is_checked() {
        let first = PiMutex::with_rank(0u8, LockRank::new(1, "first"));
        let second = PiMutex::with_rank(0u8, LockRank::new(2, "second"));
        {
            let _a = first.lock();
            let _b = second.lock();
            assert!(holds(LockRank::new(1, "first")) && holds(LockRank::new(2, "second")));
        }
        assert!(!holds(LockRank::new(2, "second")), "released");
        let broken = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _b = second.lock();
            let _a = first.lock();
        }));
        let msg = broken.expect_err("taking `first` under `second` panics");
        let msg = msg.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(msg.contains("taking `first` (rank 1) while holding `second` (rank 2)"), "{msg}");
        // Both are free again and the thread's record is clean.
        let _a = first.lock();
        let _b = second.lock();
        let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(second.lock())));
        assert!(twice.is_err(), "locking a held mutex again is an order error, not a deadlock");
    }
}
