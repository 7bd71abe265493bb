//! Refusing an operation: report it to the agent and return the errno to the LSM hook.

use aya_ebpf::helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns};
use exabond_common::event::{EventHeader, EventKind, VetoEvent, VetoWhat};

use crate::EVENTS;

/// Send a veto record (best effort: a full ring never changes the verdict) and return `errno`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn veto(what: VetoWhat, bond_ifindex: u32, member_ifindex: u32, errno: u32, detail: [u8; 16]) -> u32 {
    if let Some(mut slot) = EVENTS.reserve::<VetoEvent>(0) {
        slot.write(VetoEvent {
            header: EventHeader {
                kind: EventKind::Veto as u32,
                tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
                // SAFETY: a helper without arguments.
                ktime_ns: unsafe { bpf_ktime_get_ns() },
                comm: bpf_get_current_comm().unwrap_or([0; 16]),
            },
            what: what as u32,
            bond_ifindex,
            member_ifindex,
            errno,
            detail,
        });
        slot.submit(0);
    }
    errno
}

/// The LSM return value for a positive errno (0 = allow). The verifier only accepts returns it can prove
/// are in [-4095, 0], so every errno the policy uses maps to a constant; anything else is -EPERM.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn lsm_ret(errno: u32) -> i32 {
    match errno {
        0 => 0,
        13 => -13,
        19 => -19,
        22 => -22,
        95 => -95,
        _ => -1,
    }
}

/// What to return when an earlier BPF LSM program already refused (its code is not provably in range, so
/// it is reported as -EPERM).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub const fn refused_earlier() -> i32 {
    -1
}
