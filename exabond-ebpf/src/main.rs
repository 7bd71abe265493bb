//! exabond's eBPF programs. One module per hook; userspace (exabond-agent) loads this object, sets the
//! load-time globals (kernel struct offsets read from BTF) and keeps the maps in sync.
#![no_std]
#![no_main]

mod failover;
mod kernel;

use aya_ebpf::{
    macros::map,
    maps::{HashMap, RingBuf},
};
use exabond_common::offsets::KernelOffsets;

/// Kernel struct offsets, set by userspace at load time from BTF (`EbpfLoader::set_global`).
#[no_mangle]
static OFFSETS: KernelOffsets = KernelOffsets {
    bonding_dev: 0,
    bonding_curr_active_slave: 0,
    slave_dev: 0,
    net_device_ifindex: 0,
};

/// Records for the agent (see `exabond_common::event`). 256 KiB: thousands of events of backlog.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

/// Bonds under management: key = bond ifindex, value = reserved (0). Written by the agent only.
#[map]
static MANAGED_BONDS: HashMap<u32, u32> = HashMap::with_max_entries(1024, 0);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
