//! Hostile-input class C: the enslave ioctls. `SIOCBONDENSLAVE` and `BOND_ENSLAVE_OLD` (`SIOCDEVPRIVATE`,
//! which bonding's `ndo_siocdevprivate` turns into `SIOCBONDENSLAVE` on 6.1 and 6.12), the bond named as
//! `dev_ioctl` resolves it (a `:N` suffix is cut, altnames are names), the member by altname, and an ifreq
//! in a page not yet faulted in. Where the driver's own answer (ENODEV for an unknown name) could pass for
//! the veto's, the same form is first shown to work on the unmanaged bond `hfree`.

use std::os::fd::AsRawFd as _;

use crate::hostile::{
    done, enslaved_then_release, failed_with, is_member, release, unchanged, B, D, ENODEV, FAIL_CLOSED, U, V,
};
use crate::hostile_io::{bond_ioctl, ifreq, inet_socket, ioctl_at, Unfaulted, BOND_ENSLAVE_OLD, SIOCBONDENSLAVE};
use crate::suite::Suite;

/// The kernel applies `cmd` naming (`bond`, `dev`) on the unmanaged bond: the form is real.
fn control(cmd: u32, bond: &str, dev: &str) -> anyhow::Result<()> {
    let r = done(&format!("control on the unmanaged bond: ioctl {cmd:#x} {bond} {dev}"), bond_ioctl(cmd, bond, dev));
    if is_member(U, D) {
        release(U, D)?;
    }
    r?;
    Ok(())
}

/// An allowed ioctl enslaved `V[0]`; released again.
fn allowed(cmd: u32, bond: &str, dev: &str) -> anyhow::Result<()> {
    let r = done(&format!("ioctl {cmd:#x} {bond} {dev}"), bond_ioctl(cmd, bond, dev));
    if r.is_err() && is_member(B, V[0]) {
        release(B, V[0])?;
    }
    r?;
    enslaved_then_release(B, V[0])
}

/// The class's checks.
pub fn run(s: &mut Suite) {
    for (n, (name, cmd)) in
        [("SIOCBONDENSLAVE", SIOCBONDENSLAVE), ("BOND_ENSLAVE_OLD (SIOCDEVPRIVATE)", BOND_ENSLAVE_OLD)]
            .into_iter()
            .enumerate()
    {
        s.check(&format!("hostile C1.{n}: {name} of the refused dummy → refused ENODEV"), || {
            control(cmd, U, D)?;
            unchanged(|| failed_with(&format!("{name} {B} {D}"), bond_ioctl(cmd, B, D), &[ENODEV]))
        });
        s.check(&format!("hostile C2.{n}: {name} of an allowed veth → succeeds"), || allowed(cmd, B, V[0]));
    }

    for (n, (bond, dev, ctl_bond, ctl_dev)) in [
        ("hbond:1", D, "hfree:1", D),
        ("hbond-alt", D, "hfree-alt", D),
        (B, "hdum-alt", U, "hdum-alt"),
        ("hbond-alt:7", "hdum-alt", "hfree-alt:7", "hdum-alt"),
    ]
    .into_iter()
    .enumerate()
    {
        s.check(&format!("hostile C3.{n}: SIOCBONDENSLAVE naming {bond} / {dev} → refused ENODEV"), || {
            control(SIOCBONDENSLAVE, ctl_bond, ctl_dev)?;
            unchanged(|| {
                failed_with(&format!("SIOCBONDENSLAVE {bond} {dev}"), bond_ioctl(SIOCBONDENSLAVE, bond, dev), &[ENODEV])
            })
        });
    }
    for (n, (bond, dev)) in [("hbond:1", V[0]), ("hbond-alt", V[0]), (B, "hv0-alt")].into_iter().enumerate() {
        s.check(
            &format!("hostile C4.{n}: SIOCBONDENSLAVE naming {bond} / {dev} (an allowed veth) → succeeds"),
            || allowed(SIOCBONDENSLAVE, bond, dev),
        );
    }

    for (n, (name, cmd)) in
        [("SIOCBONDENSLAVE", SIOCBONDENSLAVE), ("BOND_ENSLAVE_OLD", BOND_ENSLAVE_OLD)].into_iter().enumerate()
    {
        s.check(
            &format!("hostile C5.{n}: {name} with the ifreq in a page not yet faulted in → refused (fail closed)"),
            || {
                let m = Unfaulted::new(&ifreq(B, D))?;
                let sock = inet_socket()?;
                unchanged(|| {
                    // SAFETY: `m` maps 4096 readable bytes holding the ifreq.
                    let r = unsafe { ioctl_at(sock.as_raw_fd(), cmd, m.ptr()) };
                    failed_with(&format!("{name} {B} {D} from an unfaulted page"), r, FAIL_CLOSED)
                })
            },
        );
    }
}
