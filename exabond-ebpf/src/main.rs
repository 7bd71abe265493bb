//! exabond's eBPF programs. One module per hook; userspace (exabond-agent) loads this object, sets the
//! load-time globals (kernel struct offsets read from BTF) and keeps the maps in sync. The programs only
//! enforce what the maps say: the policy itself is userspace code.
//!
//! Maps are pinned by name under /sys/fs/bpf/exabond (userspace sets the directory) so that the LSM
//! programs, whose links are pinned too, keep enforcing while the agent is down or restarting.
#![no_std]
#![no_main]

mod failover;
mod fast_refresh;
mod fast_word;
mod kernel;
mod lsm_file;
mod lsm_ioctl;
mod lsm_netlink;
mod lsm_page;
mod mode_audit;
mod veto;

use aya_ebpf::bindings::BPF_F_MMAPABLE;
use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use exabond_common::fast::{FastSlot, FAST_SLOTS};
use exabond_common::offsets::KernelOffsets;
use exabond_common::policy_maps::{AgentId, DevKey, GuardedFile, NameKey, PageInode};

/// Kernel struct offsets, set by userspace at load time from BTF (`EbpfLoader::override_global`).
#[no_mangle]
static OFFSETS: KernelOffsets = KernelOffsets {
    bonding_dev: 0,
    bonding_curr_active_slave: 0,
    slave_dev: 0,
    net_device_ifindex: 0,
    file_f_inode: 0,
    inode_i_ino: 0,
    inode_i_sb: 0,
    super_block_s_magic: 0,
    sock_sk_protocol: 0,
    sk_buff_data: 0,
    sk_buff_len: 0,
    pt_regs_orig_ax: 0,
    pt_regs_si: 0,
    pt_regs_dx: 0,
    bond_opt_value_value: 0,
    file_f_mode: 0,
    super_block_s_dev: 0,
    dentry_d_inode: 0,
    vm_area_struct_vm_file: 0,
    inode_setattr_dentry_arg: 0,
    sock_net: 0,
    net_ns_inum: 0,
    net_device_nd_net: 0,
    file_private_data: 0,
    socket_sk: 0,
    inode_i_mode: 0,
    pt_regs_di: 0,
    net_device_priv: 0,
    mutex_owner: 0,
    file_f_op: 0,
    bpf_map_id: 0,
};

/// Address of the kernel's `rtnl_mutex` (from `/proc/kallsyms`), set by userspace at load time; 0 keeps
/// the refresh probe from writing (see `fast_refresh.rs`).
#[no_mangle]
static RTNL_MUTEX: u64 = 0;

/// Address of the kernel's `bpf_map_fops` (from `/proc/kallsyms`): how the page guard knows a file is a
/// BPF map (0: it cannot, and does not guard `FAST_WORDS`).
#[no_mangle]
static BPF_MAP_FOPS: u64 = 0;

/// Per-CPU scratch space for what does not fit the 512-byte BPF stack (a name key, a written text).
#[repr(C)]
pub struct Scratch {
    /// Bytes written to a guarded sysfs file (twice the length read, for the verifier's bounds).
    pub text: [u8; 2 * exabond_common::veto_text::TEXT_LEN],
    /// A name in a namespace, as the maps key it.
    pub key: NameKey,
    /// The rtnetlink veto's working memory.
    pub rtnl: exabond_common::veto_rtnl::Work,
    /// The sysfs text scans' indices.
    pub scan: exabond_common::veto_text::Scan,
}

/// One [`Scratch`] per CPU (slot 0). Not pinned: it holds nothing between two program runs.
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// Records for the agent (see `exabond_common::event`). 256 KiB: thousands of events of backlog.
#[map]
static EVENTS: RingBuf = RingBuf::pinned(256 * 1024, 0);

/// The network namespace whose bonds are managed (slot 0: its inode number; 0 = no managed bond
/// anywhere, every request takes the fast exit).
#[map]
static MANAGED_NETNS: Array<u32> = Array::pinned(1, 0);

/// Bonds under management: key = (namespace, bond ifindex), value = reserved (0).
#[map]
static MANAGED_BONDS: HashMap<DevKey, u32> = HashMap::pinned(1024, 0);

/// Bonds under management by name, primary and alternative (the ioctls and rtnetlink name a bond):
/// key = (namespace, name), value = ifindex.
#[map]
static MANAGED_BY_NAME: HashMap<NameKey, u32> = HashMap::pinned(4096, 0);

/// Guarded sysfs files of managed bonds, by inode number.
#[map]
static GUARDED_FILES: HashMap<u64, GuardedFile> = HashMap::pinned(4096, 0);

/// Member verdict by (namespace, ifindex): 0 = may join a managed bond, else the errno to fail with.
/// Absent = ENODEV.
#[map]
static VERDICT_BY_IFINDEX: HashMap<DevKey, u32> = HashMap::pinned(16384, 0);

/// Member verdict by (namespace, name), primary and alternative names (sysfs `slaves`, the ioctls and
/// rtnetlink name devices). Absent = ENODEV.
#[map]
static VERDICT_BY_NAME: HashMap<NameKey, u32> = HashMap::pinned(32768, 0);

/// The fast words (`exabond_common::fast`): one slot per managed bond, written by the failover and refresh
/// probes, mapped read-only by readers (`BPF_F_MMAPABLE`).
#[map]
static FAST_WORDS: Array<FastSlot> = Array::pinned(FAST_SLOTS, BPF_F_MMAPABLE);

/// The slot of each managed bond in `FAST_WORDS`: key = (namespace, bond ifindex).
#[map]
static BOND_SLOTS: HashMap<DevKey, u32> = HashMap::pinned(FAST_SLOTS, 0);

/// Slot 0: the id of `FAST_WORDS` (set by the agent), whose writable mappings only the agent may make.
#[map]
static FAST_GUARD: Array<u32> = Array::pinned(1, 0);

/// The legacy word each member of a managed bond shows when active, by (namespace, ifindex); absent for
/// refused and not yet judged members (shown as no active slave).
#[map]
static MEMBER_WORDS: HashMap<DevKey, u32> = HashMap::pinned(16384, 0);

/// The bond pages, by (device, inode): value = the bond's ifindex. Only the agent may write them.
#[map]
static PAGE_INODES: HashMap<PageInode, u32> = HashMap::pinned(1024, 0);

/// The agent process allowed to write the pages (slot 0).
#[map]
static AGENT: Array<AgentId> = Array::pinned(1, 0);

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
