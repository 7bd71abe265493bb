//! Small reads of system state the policy needs: a device's driver (`ETHTOOL_GDRVINFO`), sysfs inodes, and
//! whether the BPF LSM is active.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;

#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// The driver of network device `name` as `ethtool -i` reports it, `None` if it cannot be read.
#[must_use]
pub fn driver_of(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 15 {
        return None;
    }
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: all-zero is a valid EthtoolDrvinfo (integers and byte arrays).
    let mut info: EthtoolDrvinfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    let mut req = IfReq { name: [0; 16], data: (&raw mut info).cast(), _pad: [0; 16] };
    req.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: `req` points to a valid ifreq whose data points to a valid ethtool_drvinfo, both live
    // for the call.
    let rc = unsafe { libc::ioctl(fd, SIOCETHTOOL, &raw mut req) };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return None;
    }
    let n = info.driver.iter().position(|&c| c == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..n]).into_owned())
}

/// Inode number of a file (for the sysfs files the LSM guards).
///
/// # Errors
/// The stat error.
pub fn inode_of(path: &Path) -> std::io::Result<u64> {
    Ok(std::fs::metadata(path)?.ino())
}

/// The agent's network namespace as the kernel numbers it (`net->ns.inum`: the inode of
/// `/proc/self/ns/net`); 0 if it cannot be read (then no request matches the maps: logged).
#[must_use]
pub fn own_netns() -> u32 {
    match std::fs::metadata("/proc/self/ns/net") {
        Ok(m) => u32::try_from(m.ino()).unwrap_or_else(|_| {
            tracing::error!(ino = m.ino(), "network namespace inode does not fit 32 bits: enforcement maps unusable");
            0
        }),
        Err(e) => {
            tracing::error!("cannot stat /proc/self/ns/net: {e}: enforcement maps unusable");
            0
        }
    }
}

/// Whether `bpf` is in the active LSM list (`/sys/kernel/security/lsm`); `None` if unreadable.
#[must_use]
pub fn bpf_lsm_active() -> Option<bool> {
    let s = std::fs::read_to_string("/sys/kernel/security/lsm").ok()?;
    Some(s.trim().split(',').any(|l| l == "bpf"))
}

/// Keep the agent's resident memory to what it uses, set before anything is allocated: no transparent huge
/// pages for this process (a 2 MiB page backs a heap that touched a few KiB of it), and at most two malloc
/// arenas (glibc gives each thread that allocates its own, 64 MiB reserved and partly touched; the agent's
/// threads allocate little, so sharing costs nothing measurable).
pub fn lean_memory() {
    // SAFETY: plain prctl/mallopt calls with constant arguments; failures only leave the defaults.
    unsafe {
        let _ = libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
        let _ = libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Give the heap's free pages back to the kernel (after start-up: the BTF parses and the eBPF object's
/// loading leave megabytes freed but resident).
pub fn trim_heap() {
    // SAFETY: malloc_trim has no preconditions.
    let _ = unsafe { libc::malloc_trim(0) };
}

/// The address of kernel symbol `name` (`/proc/kallsyms`; needs `CAP_SYSLOG` for real addresses), `None`
/// if absent or hidden (all zeros).
#[must_use]
pub fn kernel_symbol(name: &str) -> Option<u64> {
    use std::io::BufRead as _;
    let f = std::fs::File::open("/proc/kallsyms").ok()?;
    for line in std::io::BufReader::with_capacity(1 << 16, f).lines() {
        let line = line.ok()?;
        let mut it = line.split_ascii_whitespace();
        let (Some(addr), Some(_kind), Some(sym)) = (it.next(), it.next(), it.next()) else { continue };
        // Module symbols carry "[module]" after the name; a vmlinux symbol has nothing after it.
        if sym == name && it.next().is_none() {
            return u64::from_str_radix(addr, 16).ok().filter(|&a| a != 0);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_driver_and_bad_names() {
        // `lo` has no ethtool driver info on most kernels; the call must not fail hard either way.
        let _ = driver_of("lo");
        assert_eq!(driver_of(""), None);
        assert_eq!(driver_of("a-name-longer-than-15"), None);
        assert_eq!(driver_of("no-such-dev0"), None);
        assert!(inode_of(Path::new("/proc/self")).is_ok());
        assert_eq!(std::mem::size_of::<EthtoolDrvinfo>(), 196);
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
    }

    #[test]
    fn kernel_symbols() {
        assert_eq!(kernel_symbol("exabond_no_such_symbol"), None);
        // A vmlinux function every kernel has; its address is hidden (None) without CAP_SYSLOG.
        if let Some(a) = kernel_symbol("schedule") {
            assert!(a > 0xffff_0000_0000_0000, "{a:#x} is not a kernel address");
        }
    }
}
