//! Hostile-input class A: another network namespace. Devices there share ifindexes and names with the host's
//! managed bond, its member and the refused dummy; every way of enslaving and of changing the mode there is
//! legal and must succeed. The converse: a socket of the host namespace used by a thread that moved to the
//! other one still names host devices, and is refused.

use std::os::fd::AsRawFd as _;

use anyhow::{ensure, Context as _};

use crate::hostile::{done, failed_with, nl_done, unchanged, B, D, ENODEV, NS};
use crate::hostile_io::{
    bond_ioctl, ifreq, in_netns, inet_socket, ioctl_at, BOND_ENSLAVE_OLD, SIOCBONDENSLAVE, SIOCBONDRELEASE,
};
use crate::lab::{sh, sh_try};
use crate::rtnl_raw::{
    bond_mode, send, set_master, Attrs, LinkMsg, IFLA_IFNAME, IFLA_MASTER, RTM_NEWLINK, RTM_SETLINK,
};
use crate::suite::Suite;

/// The ifindex of `dev` inside the namespace.
fn ns_ifindex(dev: &str) -> anyhow::Result<u32> {
    sh(&format!("ip netns exec {NS} cat /sys/class/net/{dev}/ifindex"))?
        .parse()
        .with_context(|| format!("{NS}: ifindex of {dev}"))
}

/// The master of `dev` inside the namespace, if any.
fn ns_master(dev: &str) -> Option<String> {
    let out = sh(&format!("ip -n {NS} -o link show dev {dev}")).ok()?;
    let mut w = out.split_whitespace();
    w.find(|x| *x == "master").and_then(|_| w.next()).map(str::to_owned)
}

fn ns_mode() -> String {
    sh(&format!("ip netns exec {NS} cat /sys/class/net/{B}/bonding/mode")).unwrap_or_default()
}

/// `dev` is in the namespace's bond.
fn ns_enslaved(how: &str, dev: &str) -> anyhow::Result<()> {
    ensure!(ns_master(dev).as_deref() == Some(B), "{how}: {dev} is not in {NS}'s {B} (master {:?})", ns_master(dev));
    Ok(())
}

/// `dev` has no master in the namespace.
fn ns_released(how: &str, dev: &str) -> anyhow::Result<()> {
    ensure!(ns_master(dev).is_none(), "{how}: {dev} still has master {:?}", ns_master(dev));
    Ok(())
}

/// The class's checks.
#[expect(clippy::too_many_lines, reason = "the class's checks in order, each a closure passed to the suite")]
pub fn run(s: &mut Suite) {
    for (n, dev) in [D, "hbond-a0"].into_iter().enumerate() {
        s.check(
            &format!("hostile A1.{n}: netns with colliding ifindexes/names: ip link set {dev} master {B} succeeds"),
            || {
                unchanged(|| {
                    let (ok, out) = sh_try(&format!("ip -n {NS} link set {dev} master {B}"));
                    ensure!(ok, "ip -n {NS} link set {dev} master {B} refused: {out}");
                    ns_enslaved("ip link set master", dev)?;
                    sh(&format!("ip -n {NS} link set {dev} nomaster"))?;
                    ns_released("ip link set nomaster", dev)
                })
            },
        );
    }
    for (n, ty) in [(2, RTM_SETLINK), (3, RTM_NEWLINK)] {
        let name = if ty == RTM_SETLINK { "RTM_SETLINK" } else { "RTM_NEWLINK" };
        s.check(&format!("hostile A1.{n}: netns: raw {name} IFLA_MASTER (ifindexes as the host's) succeeds"), || {
            unchanged(|| {
                let (dev, bond) = (ns_ifindex(D)?, ns_ifindex(B)?);
                let msg = LinkMsg::new(ty, 0, dev, Attrs::new().u32(IFLA_MASTER, bond));
                in_netns(NS, || nl_done(&format!("{name} IFLA_MASTER in the netns"), send(&[msg])))?;
                ns_enslaved(name, D)?;
                in_netns(NS, || nl_done("RTM_SETLINK IFLA_MASTER 0 in the netns", send(&[set_master(dev, 0)])))?;
                ns_released(name, D)
            })
        });
    }

    for (n, (name, cmd)) in
        [("SIOCBONDENSLAVE", SIOCBONDENSLAVE), ("BOND_ENSLAVE_OLD", BOND_ENSLAVE_OLD)].into_iter().enumerate()
    {
        s.check(&format!("hostile A2.{n}: netns: {name} on a socket of that netns succeeds"), || {
            unchanged(|| {
                in_netns(NS, || done(&format!("{name} {B} {D} in the netns"), bond_ioctl(cmd, B, D)))?;
                ns_enslaved(name, D)?;
                in_netns(NS, || done("SIOCBONDRELEASE in the netns", bond_ioctl(SIOCBONDRELEASE, B, D)))?;
                ns_released(name, D)
            })
        });
    }

    s.check("hostile A3: netns: its sysfs bonding/slaves and mode (sysfs mounted by ip netns exec) succeed", || {
        unchanged(|| {
            let slaves = format!("/sys/class/net/{B}/bonding/slaves");
            let (ok, out) = sh_try(&format!("ip netns exec {NS} sh -c 'echo +{D} > {slaves}'"));
            ensure!(ok, "+{D} to {NS}'s {slaves} refused: {out}");
            ns_enslaved("sysfs +", D)?;
            sh(&format!("ip netns exec {NS} sh -c 'echo -{D} > {slaves}'"))?;
            ns_released("sysfs -", D)?;
            let mode = format!("/sys/class/net/{B}/bonding/mode");
            let (ok, out) = sh_try(&format!("ip netns exec {NS} sh -c 'echo balance-rr > {mode}'"));
            ensure!(
                ok && ns_mode().starts_with("balance-rr"),
                "balance-rr to {NS}'s {mode}: {out} (mode {})",
                ns_mode()
            );
            sh(&format!("ip netns exec {NS} sh -c 'echo active-backup > {mode}'"))?;
            ensure!(ns_mode() == "active-backup 1", "{NS}'s {B} mode {}", ns_mode());
            Ok(())
        })
    });

    s.check("hostile A4.0: netns: IFLA_BOND_MODE 0 then 1 by ifindex (the host's bond's) succeeds", || {
        unchanged(|| {
            let bond = ns_ifindex(B)?;
            in_netns(NS, || nl_done("IFLA_BOND_MODE 0 by ifindex", send(&[bond_mode(bond, Attrs::new(), &[0])])))?;
            ensure!(ns_mode().starts_with("balance-rr"), "{NS}'s {B} mode {} after mode 0", ns_mode());
            in_netns(NS, || nl_done("IFLA_BOND_MODE 1 by ifindex", send(&[bond_mode(bond, Attrs::new(), &[1])])))?;
            ensure!(ns_mode() == "active-backup 1", "{NS}'s {B} mode {} after mode 1", ns_mode());
            Ok(())
        })
    });
    s.check("hostile A4.1: netns: IFLA_BOND_MODE 2 then 1 by IFLA_IFNAME (the host's bond's name) succeeds", || {
        unchanged(|| {
            let by_name = |m| bond_mode(0, Attrs::new().str(IFLA_IFNAME, B), &[m]);
            in_netns(NS, || nl_done("IFLA_BOND_MODE 2 by IFLA_IFNAME", send(&[by_name(2)])))?;
            ensure!(ns_mode().starts_with("balance-xor"), "{NS}'s {B} mode {} after mode 2", ns_mode());
            in_netns(NS, || nl_done("IFLA_BOND_MODE 1 by IFLA_IFNAME", send(&[by_name(1)])))?;
            ensure!(ns_mode() == "active-backup 1", "{NS}'s {B} mode {} after mode 1", ns_mode());
            Ok(())
        })
    });
    s.check("hostile A4.2: netns: ip link set type bond mode succeeds", || {
        unchanged(|| {
            let (ok, out) = sh_try(&format!("ip -n {NS} link set {B} type bond mode balance-xor"));
            ensure!(
                ok && ns_mode().starts_with("balance-xor"),
                "ip link set type bond mode: {out} (mode {})",
                ns_mode()
            );
            sh(&format!("ip -n {NS} link set {B} type bond mode active-backup"))?;
            ensure!(ns_mode() == "active-backup 1", "{NS}'s {B} mode {}", ns_mode());
            Ok(())
        })
    });

    s.check(
        "hostile A5: a host socket used after setns to the netns: SIOCBONDENSLAVE names host devices → refused ENODEV",
        || {
            unchanged(|| {
                let sock = inet_socket()?;
                let fd = sock.as_raw_fd();
                let ifr = ifreq(B, D);
                let r = in_netns(NS, || {
                    // SAFETY: `ifr` is a live 40-byte ifreq; `fd` stays open (owned by `sock`) for the call.
                    Ok(unsafe { ioctl_at(fd, SIOCBONDENSLAVE, ifr.as_ptr()) })
                })?;
                failed_with(&format!("host socket, thread in {NS}: SIOCBONDENSLAVE {B} {D}"), r, &[ENODEV])
            })
        },
    );
}
