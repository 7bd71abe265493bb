//! Veto of the SIOCBONDENSLAVE ioctl (ifenslave) for refused devices on managed bonds.
//!
//! LSM hook (6.1 and 6.12): `int security_file_ioctl(struct file *file, unsigned int cmd, unsigned long
//! arg)`, called by the ioctl syscall for every fd (sockets included) before the command runs. `arg` points
//! to a user `struct ifreq`: `ifr_name[16]` (the bond) then `ifr_slave[16]` (the device).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::ENODEV;

use crate::kernel::read_user_bytes;
use crate::veto::veto;
use crate::{MANAGED_BY_NAME, VERDICT_BY_NAME};

const SIOCBONDENSLAVE: u32 = 0x8990;

/// Entry point. A failure to read user memory allows the call (the driver then fails it too).
#[lsm(hook = "file_ioctl")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_ioctl(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return crate::veto::refused_earlier();
    }
    let cmd: u32 = ctx.arg(1);
    if cmd != SIOCBONDENSLAVE {
        return 0;
    }
    crate::veto::lsm_ret(try_enslave(&ctx).unwrap_or(0))
}

fn try_enslave(ctx: &LsmContext) -> Result<u32, i64> {
    let arg: u64 = ctx.arg(2);
    let ifr: [u8; 32] = read_user_bytes(arg, 32)?;
    let mut bond = [0u8; 16];
    let mut member = [0u8; 16];
    let mut i = 0;
    while i < 15 {
        bond[i] = ifr[i];
        member[i] = ifr[16 + i];
        i += 1;
    }
    // SAFETY: lookups in our own maps; values are copied at once.
    let Some(bond_ifindex) = (unsafe { MANAGED_BY_NAME.get(bond) }).copied() else {
        return Ok(0);
    };
    // SAFETY: as above.
    let verdict = unsafe { VERDICT_BY_NAME.get(member) }.copied().unwrap_or(ENODEV);
    if verdict == 0 {
        return Ok(0);
    }
    Ok(veto(VetoWhat::MemberIoctl, bond_ifindex, 0, verdict, member))
}
