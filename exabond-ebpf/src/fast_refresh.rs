//! Refresh: kprobe at the entry of the bonding driver's `ETHTOOL_GDRVINFO` handler, where the agent asks
//! the kernel to re-derive a bond's fast word from its current active slave.
//!
//! Kernel prototype (`drivers/net/bonding/bond_main.c`, 6.1 and 6.12):
//! `static void bond_ethtool_get_drvinfo(struct net_device *bond_dev, struct ethtool_drvinfo *drvinfo)`,
//! reached from `dev_ethtool`, which holds RTNL (`net/ethtool/ioctl.c`). The probe writes only when the
//! current task is the RTNL mutex's owner (`rtnl_mutex.owner`, the address from `/proc/kallsyms`, handed
//! over in `RTNL_MUTEX`): then it is serialised with `bond_change_active_slave`, which runs under RTNL too,
//! and `curr_active_slave` is the kernel's settled state. Any caller without RTNL is ignored.
//!
//! `struct bonding` is the bond device's private area (`netdev_priv`): at `net_device_priv` from the
//! device (6.12: the `priv` member; 6.1: the aligned size of `struct net_device`). The probe checks that
//! `bond->dev` points back at the device before it trusts that.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns},
    macros::kprobe,
    programs::ProbeContext,
};
use exabond_common::policy_maps::DevKey;

use crate::kernel::{netdev_ifindex, netdev_netns, offsets, read, read_ptr, slave_ifindex};

/// Entry point. Errors are dropped: a refresh that cannot read is one the agent repeats.
#[kprobe]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn bond_ethtool_get_drvinfo(ctx: ProbeContext) -> u32 {
    let _ = try_refresh(&ctx);
    0
}

fn try_refresh(ctx: &ProbeContext) -> Result<(), i64> {
    // SAFETY: a plain static set before load (0: the address was not found; never write then).
    let rtnl = unsafe { core::ptr::read_volatile(&raw const crate::RTNL_MUTEX) };
    if rtnl == 0 {
        return Ok(());
    }
    let o = offsets();
    // `owner` is the owning task pointer with flag bits in its low 3 bits.
    let owner: u64 = read(rtnl + u64::from(o.mutex_owner))?;
    // SAFETY: a helper without arguments.
    if owner & !7 != unsafe { bpf_get_current_task() } {
        return Ok(());
    }
    let dev: u64 = ctx.arg(0).ok_or(-22i64)?;
    let bond = dev + u64::from(o.net_device_priv);
    if read_ptr(bond, o.bonding_dev)? != dev {
        return Ok(()); // not the layout the offsets describe: write nothing
    }
    let key = DevKey { netns: netdev_netns(dev, &o)?, ifindex: netdev_ifindex(dev, &o)? };
    let active = slave_ifindex(read_ptr(bond, o.bonding_curr_active_slave)?, &o)?;
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    crate::fast_word::publish(&key, active, now);
    Ok(())
}
