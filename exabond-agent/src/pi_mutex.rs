//! A mutex with priority inheritance (`PTHREAD_PRIO_INHERIT`, a PI futex in the kernel).
//!
//! The eBPF event waiters are SCHED_FIFO; the agent's other threads (rtnetlink, the poll, the control
//! socket) are normal threads that lock the same publisher. With a plain mutex, a normal thread preempted
//! while holding it makes the real-time waiter sleep behind every other normal thread on that CPU
//! (priority inversion: a failover published milliseconds late). With priority inheritance the holder runs
//! at the waiter's priority until it unlocks, so the wait is only the rest of its critical section.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};

/// A priority-inheritance mutex around a `T`. Not poisoned by a panic: the guard unlocks while unwinding
/// and every critical section of the agent leaves its state consistent.
pub struct PiMutex<T> {
    raw: Box<UnsafeCell<libc::pthread_mutex_t>>,
    data: UnsafeCell<T>,
}

// SAFETY: access to `data` is serialised by the mutex; `T: Send` moves between threads with the lock.
unsafe impl<T: Send> Send for PiMutex<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for PiMutex<T> {}

impl<T> PiMutex<T> {
    /// A new, unlocked mutex.
    ///
    /// # Panics
    /// If the C library refuses a priority-inheritance mutex (it never does on Linux/glibc or musl).
    pub fn new(value: T) -> Self {
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
        Self { raw, data: UnsafeCell::new(value) }
    }

    /// Lock, blocking (and lending this thread's priority to the holder) until it is free.
    ///
    /// # Panics
    /// If the C library reports an error (EDEADLK: this thread already holds it).
    pub fn lock(&self) -> PiMutexGuard<'_, T> {
        // SAFETY: an initialised mutex that lives as long as `self`.
        let rc = unsafe { libc::pthread_mutex_lock(self.raw.get()) };
        assert_eq!(rc, 0, "pthread_mutex_lock failed: errno {rc}");
        PiMutexGuard { m: self }
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
pub struct PiMutexGuard<'a, T> {
    m: &'a PiMutex<T>,
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
        // SAFETY: this thread holds the lock (taken in `lock`).
        unsafe { libc::pthread_mutex_unlock(self.m.raw.get()) };
    }
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
}
