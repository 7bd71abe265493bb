//! The fast word (see `exabond_common::fast`): the kernel's own publication of a managed bond's legacy
//! word into its slot of `FAST_WORDS`, which readers map. Called by the failover probe (`failover.rs`) and
//! the refresh probe (`fast_refresh.rs`), both under RTNL: one writer at a time per slot.
//!
//! Store order (what the readers rely on, and what `exabond_common::fast_reader` reads): the sequence
//! made odd, the kernel half, the sequence made even, then the word hot loops poll. Volatile stores keep
//! that order in the program; the `x86_64` JIT emits them as plain `mov`s, which x86 makes visible in
//! program order.

use core::ptr::{read_volatile, write_volatile};

use exabond_common::fast::{FastSlot, FAST_ACTIVE, FAST_UNJUDGED};
use exabond_common::page::legacy;
use exabond_common::policy_maps::DevKey;

use crate::{BOND_SLOTS, FAST_WORDS, MEMBER_WORDS};

/// Publish that the kernel's active slave of `bond` is `member_ifindex` (0: none) as of `ktime_ns`. Does
/// nothing for a bond without a slot, and nothing when the slot already says so (a second probe attached
/// during an agent's restart, or a refresh with nothing to correct).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn publish(bond: &DevKey, member_ifindex: u32, ktime_ns: u64) {
    // SAFETY: lookups in our own maps; the values are read at once, not kept.
    let Some(&slot) = (unsafe { BOND_SLOTS.get(bond) }) else {
        return;
    };
    let Some(p) = FAST_WORDS.get_ptr_mut(slot) else {
        return;
    };
    let key = DevKey { netns: bond.netns, ifindex: member_ifindex };
    // SAFETY: as above.
    let member_word = if member_ifindex == 0 { None } else { unsafe { MEMBER_WORDS.get(key) }.copied() };
    // SAFETY: `p` is a live map value of FastSlot size (the lookup succeeded); volatile accesses of its
    // aligned fields.
    unsafe {
        let old_word = read_volatile(&raw const (*p).word);
        let (word, active, flags) = match member_word {
            Some(w) => (w | legacy::ACTIVE, member_ifindex, FAST_ACTIVE),
            // The original cleared the flags and kept the last id and port.
            None => (old_word & !0xffff, 0, if member_ifindex == 0 { 0 } else { FAST_UNJUDGED }),
        };
        if old_word == word
            && read_volatile(&raw const (*p).active_ifindex) == active
            && read_volatile(&raw const (*p).kernel_ifindex) == member_ifindex
            && read_volatile(&raw const (*p).flags) == flags
        {
            return;
        }
        let seq = read_volatile(&raw const (*p).seq);
        let seq = seq + (seq & 1); // a writer never stops half-way, but never leave it odd
        write_volatile(&raw mut (*p).seq, seq + 1);
        write_volatile(&raw mut (*p).active_ifindex, active);
        write_volatile(&raw mut (*p).flags, flags);
        write_volatile(&raw mut (*p).kernel_ns, ktime_ns);
        let changes = read_volatile(&raw const (*p).changes);
        write_volatile(&raw mut (*p).changes, changes + 1);
        write_volatile(&raw mut (*p).kernel_ifindex, member_ifindex);
        write_volatile(&raw mut (*p).seq, seq + 2);
        write_volatile(&raw mut (*p).word, word);
    }
}

/// The type check the map needs (the slot is one cache line).
const _: () = assert!(core::mem::size_of::<FastSlot>() == 64);
