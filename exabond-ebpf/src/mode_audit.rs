//! Audit of bonding mode changes: kprobe at the entry of the bonding driver's `bond_option_mode_set`.
//!
//! Kernel prototype (`drivers/net/bonding/bond_options.c`, 6.1 and 6.12):
//! `static int bond_option_mode_set(struct bonding *bond, const struct bond_opt_value *newval)`; the new
//! mode is `newval->value`. With the BPF LSM active, forbidden changes never get here; without it (an
//! `lsm=` list lacking bpf) this record lets the agent log who changed the mode before it restores it.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::kprobe,
    programs::ProbeContext,
};
use exabond_common::event::{EventHeader, EventKind, ModeSetEvent};

use crate::kernel::{netdev_ifindex, netdev_netns, offsets, read, read_ptr};
use crate::{EVENTS, MANAGED_BONDS};
use exabond_common::policy_maps::DevKey;

/// Entry point.
#[kprobe]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn bond_option_mode_set(ctx: ProbeContext) -> u32 {
    let _ = try_mode_set(&ctx);
    0
}

#[expect(
    clippy::cast_possible_truncation,
    reason = "a bonding mode (0 to 6) in the low bits of the option's u64 value"
)]
fn try_mode_set(ctx: &ProbeContext) -> Result<(), i64> {
    let bond: u64 = ctx.arg(0).ok_or(-22i64)?;
    let newval: u64 = ctx.arg(1).ok_or(-22i64)?;
    let o = offsets();
    let dev = read_ptr(bond, o.bonding_dev)?;
    let bond_ifindex = netdev_ifindex(dev, &o)?;
    let key = DevKey { netns: netdev_netns(dev, &o)?, ifindex: bond_ifindex };
    // SAFETY: a lookup in our own map.
    if unsafe { MANAGED_BONDS.get(key) }.is_none() {
        return Ok(());
    }
    let mode: u64 = read(newval + u64::from(o.bond_opt_value_value))?;
    let Some(mut slot) = EVENTS.reserve::<ModeSetEvent>(0) else { return Err(-28) };
    slot.write(ModeSetEvent {
        header: EventHeader {
            kind: EventKind::ModeSet as u32,
            tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
            // SAFETY: a helper without arguments.
            ktime_ns: unsafe { bpf_ktime_get_ns() },
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        },
        bond_ifindex,
        mode: mode as u32,
    });
    slot.submit(0);
    Ok(())
}
