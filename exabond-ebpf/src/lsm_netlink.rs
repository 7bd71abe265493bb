//! Veto of rtnetlink requests that would change a managed bond's mode or enslave a refused device.
//!
//! LSM hook (6.1 and 6.12): `int security_netlink_send(struct sock *sk, struct sk_buff *skb)`, called by
//! `netlink_sendmsg` before the message is delivered to the kernel. Every message of the batch (up to
//! [`MAX_MSGS`]) is parsed: `RTM_NEWLINK`/`RTM_SETLINK` → ifinfomsg → attributes; `IFLA_MASTER` naming a managed
//! bond (`ip link set X master B`) is checked against the member verdicts; `IFLA_LINKINFO` → `IFLA_INFO_DATA` →
//! `IFLA_BOND_MODE` on a managed bond (`ip link set B type bond mode M`) must be active-backup (1).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::{ENODEV, EOPNOTSUPP};

use crate::kernel::{load_btf, offset, offsets, read, read_ptr};
use crate::veto::veto;
use crate::{MANAGED_BONDS, VERDICT_BY_IFINDEX};

const NETLINK_ROUTE: u16 = 0;
const RTM_NEWLINK: u16 = 16;
const RTM_SETLINK: u16 = 19;
const NLMSG_HDRLEN: u32 = 16;
const IFINFOMSG_LEN: u32 = 16;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BOND_MODE: u16 = 1;
const BOND_MODE_ACTIVEBACKUP: u8 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// Messages parsed per send. iproute2 sends one per sendmsg; messages of a longer batch beyond these are
/// not checked (documented as a known gap).
const MAX_MSGS: u32 = 4;
const MAX_ATTRS: u32 = 32;
const MAX_LINKINFO_ATTRS: u32 = 4;
const MAX_BOND_ATTRS: u32 = 24;

#[repr(C)]
#[derive(Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct RtAttr {
    len: u16,
    ty: u16,
}

const fn align4(n: u32) -> u32 {
    (n + 3) & !3
}

/// Entry point. A failure to read kernel memory allows the message.
#[lsm(hook = "netlink_send")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn netlink_send(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return crate::veto::refused_earlier();
    }
    crate::veto::lsm_ret(try_netlink_send(&ctx).unwrap_or(0))
}

fn try_netlink_send(ctx: &LsmContext) -> Result<u32, i64> {
    let sk: u64 = ctx.arg(0);
    let skb: u64 = ctx.arg(1);
    // SAFETY: `sk` is the hook's BTF-typed argument. One checked load, no helper, lets every other
    // netlink family go.
    let proto: u16 = unsafe { load_btf(sk, offset!(sock_sk_protocol)) };
    if proto != NETLINK_ROUTE {
        return Ok(0);
    }
    let o = offsets();
    let data = read_ptr(skb, o.sk_buff_data)?;
    let len: u32 = read(skb + u64::from(o.sk_buff_len))?;
    let mut off: u32 = 0;
    for _ in 0..MAX_MSGS {
        if off.saturating_add(NLMSG_HDRLEN) > len {
            return Ok(0);
        }
        let hdr: NlMsgHdr = read(data + u64::from(off))?;
        if hdr.len < NLMSG_HDRLEN || hdr.len > len - off {
            return Ok(0);
        }
        if hdr.ty == RTM_NEWLINK || hdr.ty == RTM_SETLINK {
            let v = check_link(data + u64::from(off), hdr.len)?;
            if v != 0 {
                return Ok(v);
            }
        }
        off += align4(hdr.len);
    }
    Ok(0)
}

/// Find the first attribute of type `want` among the attributes in `[start, end)` of `base`; returns its
/// offset and length. Flat (no nesting) so the verifier's path count stays small.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn find_attr<const N: u32>(base: u64, start: u32, end: u32, want: u16) -> Result<Option<(u32, u32)>, i64> {
    let mut off = start;
    for _ in 0..N {
        if off + 4 > end {
            return Ok(None);
        }
        let a: RtAttr = read(base + u64::from(off))?;
        let alen = u32::from(a.len);
        if alen < 4 || alen > end - off {
            return Ok(None);
        }
        if a.ty & NLA_TYPE_MASK == want {
            return Ok(Some((off, alen)));
        }
        off += align4(alen);
    }
    Ok(None)
}

/// One `RTM_NEWLINK`/`RTM_SETLINK` message at `msg` of `mlen` bytes.
fn check_link(msg: u64, mlen: u32) -> Result<u32, i64> {
    if mlen < NLMSG_HDRLEN + IFINFOMSG_LEN {
        return Ok(0);
    }
    let index: u32 = read(msg + u64::from(NLMSG_HDRLEN) + 4)?;
    let first = NLMSG_HDRLEN + IFINFOMSG_LEN;
    if let Some((off, alen)) = find_attr::<MAX_ATTRS>(msg, first, mlen, IFLA_MASTER)? {
        if alen >= 8 {
            let master: u32 = read(msg + u64::from(off) + 4)?;
            // SAFETY: lookups in our own maps; values are copied at once.
            if master != 0 && unsafe { MANAGED_BONDS.get(master) }.is_some() {
                let verdict = if index == 0 {
                    ENODEV // a device being created with a master: nothing to judge yet
                } else {
                    // SAFETY: a lookup in our own map; the value is copied at once.
                    unsafe { VERDICT_BY_IFINDEX.get(index) }.copied().unwrap_or(ENODEV)
                };
                if verdict != 0 {
                    return Ok(veto(VetoWhat::MemberNetlink, master, index, verdict, [0; 16]));
                }
            }
        }
    }
    // SAFETY: a lookup in our own map.
    if index == 0 || unsafe { MANAGED_BONDS.get(index) }.is_none() {
        return Ok(0);
    }
    let Some((li, li_len)) = find_attr::<MAX_ATTRS>(msg, first, mlen, IFLA_LINKINFO)? else { return Ok(0) };
    let li_end = li + li_len;
    let Some((data, data_len)) = find_attr::<MAX_LINKINFO_ATTRS>(msg, li + 4, li_end, IFLA_INFO_DATA)? else {
        return Ok(0);
    };
    let Some((mode_at, mode_len)) = find_attr::<MAX_BOND_ATTRS>(msg, data + 4, data + data_len, IFLA_BOND_MODE)? else {
        return Ok(0);
    };
    if mode_len < 5 {
        return Ok(0);
    }
    let mode: u8 = read(msg + u64::from(mode_at) + 4)?;
    if mode == BOND_MODE_ACTIVEBACKUP {
        return Ok(0);
    }
    let mut detail = [0u8; 16];
    detail[0] = mode;
    Ok(veto(VetoWhat::ModeNetlink, index, 0, EOPNOTSUPP, detail))
}
