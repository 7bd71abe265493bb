//! Hostile-input class B: rtnetlink requests read the way the kernel reads them (the last of duplicate
//! attributes wins, unknown and empty attributes are skipped with no count limit, a device may be named
//! instead of numbered, one `sendmsg` carries a batch applied in order). Each refused request must fail the
//! `sendmsg` itself (the veto; a kernel refusal would come back as an acknowledgement and does not count)
//! and change nothing; the same forms naming an allowed veth, and a batch of unrelated messages, must
//! succeed.

use anyhow::ensure;

use crate::hostile::{
    enslaved_then_release, ifindex, is_member, nl_done, nl_refused, unchanged, B, D, E, ENODEV, EOPNOTSUPP,
    FAIL_CLOSED, NS, U, UNREL, V,
};
use crate::hostile_io::in_netns;
use crate::lab::{bond_mode, bond_slaves, read_sysfs, sh};
use crate::rtnl_raw::{
    bond_mode as mode_msg, send, set_master, Attrs, LinkMsg, IFLA_ALT_IFNAME, IFLA_IFNAME, IFLA_MASTER, IFLA_MTU,
    IFLA_NET_NS_PID, NLM_F_CREATE, NLM_F_EXCL, RTM_DELLINK, RTM_NEWLINK, RTM_SETLINK,
};
use crate::suite::Suite;

/// How many unknown or empty attributes go before `IFLA_MASTER` (more than any fixed small bound).
const PADDING: u16 = 44;

/// `PADDING` attributes the kernel skips: `IFLA_UNSPEC` and types above `IFLA_MAX`, most of them empty.
fn padding() -> Attrs {
    (0..PADDING).fold(Attrs::new(), |a, i| {
        if i % 4 == 0 {
            a.raw(0, &[])
        } else if i % 4 == 1 {
            a.u32(1000 + i, 0xdead_beef)
        } else {
            a.raw(1000 + i, &[])
        }
    })
}

/// The forms of enslaving `dev` (ifindex `idx`, altname `alt`) to bond ifindex `bond` that the kernel
/// applies, each as a labelled batch (the batch of 10 first sets `UNREL`'s MTU to `mtu`, `mtu` + 1 ... + 8).
fn enslave_forms(dev: &str, idx: u32, alt: &str, bond: u32, other: u32, mtu: u32) -> Vec<(String, Vec<LinkMsg>)> {
    let unrel = ifindex(UNREL).unwrap_or(0);
    let mut batch: Vec<LinkMsg> =
        (0..9).map(|i| LinkMsg::new(RTM_SETLINK, 0, unrel, Attrs::new().u32(IFLA_MTU, mtu + i))).collect();
    batch.push(set_master(idx, bond));
    vec![
        (
            format!("duplicate IFLA_MASTER 0 then {B} on {dev}"),
            vec![LinkMsg::new(RTM_SETLINK, 0, idx, Attrs::new().u32(IFLA_MASTER, 0).u32(IFLA_MASTER, bond))],
        ),
        (
            format!("duplicate IFLA_MASTER {U} then {B} on {dev}"),
            vec![LinkMsg::new(RTM_SETLINK, 0, idx, Attrs::new().u32(IFLA_MASTER, other).u32(IFLA_MASTER, bond))],
        ),
        (
            format!("RTM_NEWLINK ifi_index 0, IFLA_IFNAME {dev}"),
            vec![LinkMsg::new(RTM_NEWLINK, 0, 0, Attrs::new().str(IFLA_IFNAME, dev).u32(IFLA_MASTER, bond))],
        ),
        (
            format!("RTM_SETLINK ifi_index 0, IFLA_IFNAME {dev}"),
            vec![LinkMsg::new(RTM_SETLINK, 0, 0, Attrs::new().str(IFLA_IFNAME, dev).u32(IFLA_MASTER, bond))],
        ),
        (
            format!("RTM_SETLINK ifi_index 0, IFLA_ALT_IFNAME {alt}"),
            vec![LinkMsg::new(RTM_SETLINK, 0, 0, Attrs::new().str(IFLA_ALT_IFNAME, alt).u32(IFLA_MASTER, bond))],
        ),
        (
            format!("{PADDING} unknown/empty attributes before IFLA_MASTER on {dev}"),
            vec![LinkMsg::new(RTM_SETLINK, 0, idx, padding().u32(IFLA_MASTER, bond))],
        ),
        (format!("batch of 10, only the last enslaves {dev}"), batch),
    ]
}

/// The class's checks.
#[expect(clippy::too_many_lines, reason = "the class's checks in order, each a closure passed to the suite")]
pub fn run(s: &mut Suite) {
    let Ok((b_idx, e_idx, u_idx, d_idx)) = (|| anyhow::Ok((ifindex(B)?, ifindex(E)?, ifindex(U)?, ifindex(D)?)))()
    else {
        s.check("hostile B: ifindexes of the lab", || -> anyhow::Result<()> {
            anyhow::bail!("the lab's devices are gone")
        });
        return;
    };

    for (n, (what, msgs)) in enslave_forms(D, d_idx, "hdum-alt", b_idx, u_idx, 1400).into_iter().enumerate() {
        // A bound the veto cannot avoid (attributes, messages) may refuse with its fail-closed errno.
        let errnos = if what.contains("unknown") || what.contains("batch") { FAIL_CLOSED } else { &[ENODEV] };
        s.check(&format!("hostile B1.{n}: {what} → refused, nothing changed"), || {
            unchanged(|| nl_refused(&what, send(&msgs), errnos))
        });
    }

    let veth = V[0];
    let v_idx = ifindex(veth).unwrap_or(0);
    for (n, (what, msgs)) in enslave_forms(veth, v_idx, "hv0-alt", b_idx, u_idx, 1450).into_iter().enumerate() {
        s.check(&format!("hostile B2.{n}: allowed veth, {what} → succeeds"), || {
            let r = nl_done(&what, send(&msgs)).and_then(|()| enslaved_then_release(B, veth));
            if r.is_err() && is_member(B, veth) {
                let _ = crate::hostile::release(B, veth);
            }
            r?;
            if what.contains("batch") {
                let mtu = read_sysfs(&format!("/sys/class/net/{UNREL}/mtu"))?;
                ensure!(mtu == "1458", "the batch's MTU changes were not applied: {UNREL} MTU {mtu}");
            }
            Ok(())
        });
    }

    for (bond, idx) in [(E, e_idx), (B, b_idx)] {
        for (n, (what, msg)) in [
            ("IFLA_BOND_MODE 0 by ifindex", mode_msg(idx, Attrs::new(), &[0])),
            ("IFLA_BOND_MODE 0 by IFLA_IFNAME", mode_msg(0, Attrs::new().str(IFLA_IFNAME, bond), &[0])),
            ("duplicate IFLA_BOND_MODE 1 then 0", mode_msg(idx, Attrs::new(), &[1, 0])),
            (
                "by IFLA_IFNAME, duplicate IFLA_BOND_MODE 1 then 2",
                mode_msg(0, Attrs::new().str(IFLA_IFNAME, bond), &[1, 2]),
            ),
        ]
        .into_iter()
        .enumerate()
        {
            s.check(&format!("hostile B3.{bond}.{n}: mode change of {bond}, {what} → refused EOPNOTSUPP"), || {
                unchanged(|| nl_refused(what, send(&[msg]), &[EOPNOTSUPP]))
            });
        }
    }

    s.check("hostile B4: active-backup via rtnetlink on the down, empty managed bond (by ifindex, by name, 0 then 1) succeeds", || {
        for (what, msg) in [
            ("IFLA_BOND_MODE 1 by ifindex", mode_msg(e_idx, Attrs::new(), &[1])),
            ("IFLA_BOND_MODE 1 by IFLA_IFNAME", mode_msg(0, Attrs::new().str(IFLA_IFNAME, E), &[1])),
            ("IFLA_BOND_MODE 0 then 1 (the kernel applies 1)", mode_msg(e_idx, Attrs::new(), &[0, 1])),
        ] {
            nl_done(what, send(&[msg]))?;
            ensure!(bond_mode(E) == "active-backup 1", "{what}: {E} mode {}", bond_mode(E));
        }
        Ok(())
    });

    s.check(
        "hostile B5: one sendmsg deletes an allowed veth and creates a dummy with its ifindex in hbond → refused",
        || {
            let veth = V[2];
            let vi = ifindex(veth)?;
            let create = LinkMsg::new(
                RTM_NEWLINK,
                NLM_F_CREATE | NLM_F_EXCL,
                vi,
                Attrs::new().str(IFLA_IFNAME, "hrecycle").linkinfo("dummy", &Attrs::new()).u32(IFLA_MASTER, b_idx),
            );
            let msgs = [LinkMsg::new(RTM_DELLINK, 0, vi, Attrs::new()), create];
            unchanged(|| {
                nl_refused(&format!("delete {veth} + create hrecycle (ifindex {vi}) in {B}"), send(&msgs), FAIL_CLOSED)
            })
        },
    );

    s.check(
        "hostile B6: one sendmsg renames an allowed veth away, the dummy to its name, enslaves by name → refused",
        || {
            let (veth, vi) = (V[2], ifindex(V[2])?);
            sh(&format!("ip link set {veth} down; ip link set {D} down"))?;
            let msgs = [
                LinkMsg::new(RTM_SETLINK, 0, vi, Attrs::new().str(IFLA_IFNAME, "hv2-away")),
                LinkMsg::new(RTM_SETLINK, 0, d_idx, Attrs::new().str(IFLA_IFNAME, veth)),
                LinkMsg::new(RTM_SETLINK, 0, 0, Attrs::new().str(IFLA_IFNAME, veth).u32(IFLA_MASTER, b_idx)),
            ];
            unchanged(|| nl_refused("rename, rename, enslave by name", send(&msgs), &[ENODEV]))
        },
    );

    s.check("hostile B7: a dummy created with IFLA_MASTER = hbond → refused", || {
        let msg = LinkMsg::new(
            RTM_NEWLINK,
            NLM_F_CREATE | NLM_F_EXCL,
            0,
            Attrs::new().str(IFLA_IFNAME, "hnew").linkinfo("dummy", &Attrs::new()).u32(IFLA_MASTER, b_idx),
        );
        unchanged(|| nl_refused("create hnew in hbond", send(&[msg]), FAIL_CLOSED))
    });

    s.check(
        "hostile B8: a dummy moved from netns hns into the host with IFLA_MASTER = hbond in the same request → refused",
        || {
            let idx: u32 = sh(&format!("ip netns exec {NS} cat /sys/class/net/hmove/ifindex"))?.parse()?;
            let msg = LinkMsg::new(RTM_SETLINK, 0, idx, Attrs::new().u32(IFLA_NET_NS_PID, 1).u32(IFLA_MASTER, b_idx));
            unchanged(|| {
                in_netns(NS, || {
                    nl_refused(
                        &format!("{NS}'s hmove (ifindex {idx}) to pid 1's netns, master {B}"),
                        send(&[msg]),
                        FAIL_CLOSED,
                    )
                })
            })
        },
    );

    s.check(
        "hostile B9: a batch of unrelated messages (MTU, an unmanaged bond's members and mode, 44 paddings) succeeds",
        || {
            let unrel = ifindex(UNREL)?;
            sh(&format!("ip link set {U} down"))?;
            let msgs = vec![
                LinkMsg::new(RTM_SETLINK, 0, unrel, Attrs::new().u32(IFLA_MTU, 1300)),
                set_master(d_idx, u_idx),
                set_master(d_idx, 0),
                mode_msg(u_idx, Attrs::new(), &[0]),
                mode_msg(0, Attrs::new().str(IFLA_IFNAME, U), &[2]),
                mode_msg(u_idx, Attrs::new(), &[1]),
                LinkMsg::new(RTM_SETLINK, 0, d_idx, padding().u32(IFLA_MTU, 1280)),
                LinkMsg::new(RTM_SETLINK, 0, 0, Attrs::new().str(IFLA_IFNAME, UNREL).u32(IFLA_MTU, 1320)),
                set_master(unrel, u_idx),
                LinkMsg::new(RTM_SETLINK, 0, unrel, Attrs::new().u32(IFLA_MASTER, 0)),
            ];
            nl_done("unrelated batch", send(&msgs))?;
            ensure!(read_sysfs(&format!("/sys/class/net/{UNREL}/mtu"))? == "1320", "{UNREL} MTU not applied");
            ensure!(read_sysfs(&format!("/sys/class/net/{D}/mtu"))? == "1280", "{D} MTU not applied");
            ensure!(
                bond_mode(U) == "active-backup 1" && bond_slaves(U).is_empty(),
                "{U}: {} {:?}",
                bond_mode(U),
                bond_slaves(U)
            );
            Ok(())
        },
    );
}
