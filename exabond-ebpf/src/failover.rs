//! Failover: kprobe at the entry of the bonding driver's `bond_change_active_slave`.
//!
//! Kernel prototype (`drivers/net/bonding/bond_main.c`, 6.1 and 6.12):
//! `void bond_change_active_slave(struct bonding *bond, struct slave *new_active)`
//! called under RTNL. At entry `bond->curr_active_slave` is still the old slave; the function returns at
//! once when `new_active == old_active`, otherwise it switches (and near its end raises
//! `NETDEV_BONDING_FAILOVER`, the rtnetlink event). A probe at entry therefore sees the decision before any
//! netlink listener can. `new_active` is NULL when no slave is left.
//!
//! It publishes the bond's fast word itself (`fast_word.rs`), then sends the agent a record.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns},
    macros::kprobe,
    programs::ProbeContext,
};
use aya_log_ebpf::error;
use exabond_common::event::{EventHeader, EventKind, FailoverEvent};

use crate::kernel::{netdev_ifindex, netdev_netns, offsets, read_ptr, slave_ifindex};
use crate::{EVENTS, MANAGED_BONDS};
use exabond_common::policy_maps::DevKey;

/// Entry point: errors are logged through aya-log (they reach the agent's log).
#[kprobe]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn bond_change_active_slave(ctx: ProbeContext) -> u32 {
    if let Err(e) = try_bond_change_active_slave(&ctx) {
        error!(&ctx, "exabond: bond_change_active_slave probe failed: {}", e);
    }
    0
}

fn try_bond_change_active_slave(ctx: &ProbeContext) -> Result<(), i64> {
    // SAFETY: a helper without arguments.
    let ktime_ns = unsafe { bpf_ktime_get_ns() };
    let bond: u64 = ctx.arg(0).ok_or(-22i64)?;
    let new_active: u64 = ctx.arg(1).unwrap_or(0);
    let o = offsets();
    let dev = read_ptr(bond, o.bonding_dev)?;
    let bond_ifindex = netdev_ifindex(dev, &o)?;
    // A bond of another namespace may have the same ifindex: the key is (namespace, ifindex).
    let key = DevKey { netns: netdev_netns(dev, &o)?, ifindex: bond_ifindex };
    // SAFETY: a lookup in our own map; the value is not kept.
    if unsafe { MANAGED_BONDS.get(key) }.is_none() {
        return Ok(());
    }
    let old_active = read_ptr(bond, o.bonding_curr_active_slave)?;
    if old_active == new_active {
        return Ok(()); // the kernel returns at once: nothing changes
    }
    let old_ifindex = slave_ifindex(old_active, &o)?;
    let new_ifindex = slave_ifindex(new_active, &o)?;
    // The fast word first: readers that map it see the change now, whatever becomes of the record below
    // (a full ring while no agent drains it).
    crate::fast_word::publish(&key, new_ifindex, ktime_ns);
    // Reserve late and submit at once: epoll reports the ring readable as soon as a record is reserved.
    let Some(mut slot) = EVENTS.reserve::<FailoverEvent>(0) else {
        return Err(-28); // ENOSPC: the agent is not draining the ring
    };
    slot.write(FailoverEvent {
        header: EventHeader {
            kind: EventKind::Failover as u32,
            tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
            ktime_ns,
            comm: bpf_get_current_comm().unwrap_or([0; 16]),
        },
        bond_ifindex,
        old_ifindex,
        new_ifindex,
        _pad: 0,
    });
    slot.submit(0);
    Ok(())
}
