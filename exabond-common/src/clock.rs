//! Clock readings in the units the page uses (nanoseconds of `CLOCK_MONOTONIC` / `CLOCK_REALTIME`).
//!
//! `CLOCK_MONOTONIC` is the clock of the kernel's `bpf_ktime_get_ns()`, so page and event times compare.

fn now(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; these clocks always exist on Linux (vDSO, no syscall).
    let rc = unsafe { libc::clock_gettime(clock, &raw mut ts) };
    debug_assert_eq!(rc, 0);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(ts.tv_nsec).unwrap_or(0)
}

/// `CLOCK_MONOTONIC` in ns.
#[must_use]
pub fn monotonic_ns() -> u64 {
    now(libc::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in ns since the Unix epoch.
#[must_use]
pub fn realtime_ns() -> u64 {
    now(libc::CLOCK_REALTIME)
}
