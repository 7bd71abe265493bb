//! Veto of rtnetlink requests that would change a managed bond's mode or enslave a refused device.
//!
//! LSM hook (6.1 and 6.12): `int security_netlink_send(struct sock *sk, struct sk_buff *skb)`, called by
//! `netlink_sendmsg` before the buffer is delivered to the kernel. The reading of the buffer (every
//! message, attributes as the kernel's liberal parser reads them, names, batches, namespace moves) is
//! `exabond_common::veto_rtnl::judge`, tested on the host against a model of the kernel; here it is fed
//! kernel memory and the pinned maps, keyed by the sender socket's network namespace (where the kernel
//! applies the request).

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel};
use aya_ebpf::{cty::c_void, macros::lsm, programs::LsmContext};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::{DevKey, NameKey, ENODEV, EOPNOTSUPP, NAME_LEN};
use exabond_common::veto_rtnl::{
    judge_mode_check, judge_msg, walk_step, Bytes, Fault, Flow, Lookup, Refusal, Sender, Work, MAX_MODE_CHECKS,
    MAX_STEPS,
};

use crate::kernel::{load_btf, managed_netns, offset, offsets, read, read_ptr, sock_netns};
use crate::veto::veto;
use crate::{MANAGED_BONDS, MANAGED_BY_NAME, SCRATCH, VERDICT_BY_IFINDEX, VERDICT_BY_NAME};

const NETLINK_ROUTE: u16 = 0;
#[expect(clippy::cast_possible_truncation, reason = "a small constant")]
const MODE_CHECKS: u32 = MAX_MODE_CHECKS as u32;

/// The buffer's bytes in kernel memory.
struct Skb(u64);

#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
impl Bytes for Skb {
    #[inline(always)]
    fn load<T: Copy>(&self, off: u32) -> Result<T, Fault> {
        read(self.0 + u64::from(off)).map_err(|_| Fault)
    }

    #[inline(always)]
    #[expect(clippy::cast_possible_truncation, reason = "NAME_LEN - 1 fits in u32")]
    fn load_name(&self, off: u32, len: u32, out: &mut [u8; NAME_LEN]) -> Result<(), Fault> {
        // The caller checked `len < NAME_LEN`, so the compiler would drop the mask, and the copy it then
        // passes to the helper is one the verifier saw no bound on: a volatile read keeps the mask.
        // SAFETY: a read of a local.
        let n = unsafe { core::ptr::read_volatile(&raw const len) } & (NAME_LEN as u32 - 1);
        if n == 0 {
            return Ok(());
        }
        // SAFETY: at most NAME_LEN - 1 bytes into our own buffer; the helper checks the address.
        let rc = unsafe { bpf_probe_read_kernel(out.as_mut_ptr().cast(), n, (self.0 + u64::from(off)) as *const _) };
        if rc < 0 {
            Err(Fault)
        } else {
            Ok(())
        }
    }
}

/// The maps, for the sender's namespace.
struct Maps(u32);

#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
impl Lookup for Maps {
    #[inline(always)]
    fn managed_bond(&self, ifindex: u32) -> bool {
        // SAFETY: a lookup in our own map.
        unsafe { MANAGED_BONDS.get(DevKey { netns: self.0, ifindex }) }.is_some()
    }

    #[inline(always)]
    fn bond_by_name(&self, key: &NameKey) -> Option<u32> {
        // SAFETY: a lookup in our own map; the value is copied at once.
        unsafe { MANAGED_BY_NAME.get(key) }.copied()
    }

    #[inline(always)]
    fn verdict(&self, ifindex: u32) -> u32 {
        // SAFETY: a lookup in our own map; the value is copied at once.
        unsafe { VERDICT_BY_IFINDEX.get(DevKey { netns: self.0, ifindex }) }.copied().unwrap_or(ENODEV)
    }

    #[inline(always)]
    fn verdict_by_name(&self, key: &NameKey) -> u32 {
        // SAFETY: a lookup in our own map; the value is copied at once.
        unsafe { VERDICT_BY_NAME.get(key) }.copied().unwrap_or(ENODEV)
    }
}

/// Entry point. While no bond is managed anywhere, every request goes after one map lookup.
#[lsm(hook = "netlink_send")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn netlink_send(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return crate::veto::refused_earlier();
    }
    let sk: u64 = ctx.arg(0);
    // SAFETY: `sk` is the hook's BTF-typed argument. One checked load, no helper, lets every other
    // netlink family go.
    let proto: u16 = unsafe { load_btf(sk, offset!(sock_sk_protocol)) };
    if proto != NETLINK_ROUTE {
        return 0;
    }
    let managed = managed_netns();
    if managed == 0 {
        return 0;
    }
    // A request the program cannot read is refused (fail closed): it may concern a managed bond.
    let errno =
        try_netlink_send(&ctx, sk, managed).unwrap_or_else(|_| veto(VetoWhat::Unparseable, 0, 0, EOPNOTSUPP, [0; 16]));
    crate::veto::lsm_ret(errno)
}

fn try_netlink_send(ctx: &LsmContext, sk: u64, managed: u32) -> Result<u32, i64> {
    let skb: u64 = ctx.arg(1);
    let o = offsets();
    let netns = sock_netns(sk, &o)?;
    let data = read_ptr(skb, o.sk_buff_data)?;
    let len: u32 = read(skb + u64::from(o.sk_buff_len))?;
    let sender = if netns == managed { Sender::Managed } else { Sender::Other };
    let w = work().ok_or(-12i64)?;
    w.key.netns = netns;
    w.data = data;
    w.begin(len, sender);
    // Each step is a bpf_loop callback: the verifier checks one step, not every path through the buffer.
    run_steps(MAX_STEPS, walk_cb)?;
    let w = work().ok_or(-12i64)?;
    let refusal = match w.walked() {
        Ok(n) => {
            run_steps(n, msg_cb)?;
            run_steps(MODE_CHECKS, mode_cb)?;
            work().ok_or(-12i64)?.refusal
        }
        Err(r) => Some(r),
    };
    match refusal {
        None => Ok(0),
        Some(r) => {
            let mut detail = [0u8; 16];
            detail[0] = r.mode;
            Ok(veto(r.what, r.bond, r.member, r.errno, detail))
        }
    }
}

/// This CPU's working memory (one program run at a time per CPU).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn work() -> Option<&'static mut Work> {
    let scratch = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's slot of our own map, used by one program run at a time.
    Some(unsafe { &mut (*scratch).rtnl })
}

/// Up to `n` calls of `step`; a read that failed in a step is a fault (the caller refuses).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn run_steps(n: u32, step: extern "C" fn(u64, *mut c_void) -> i64) -> Result<(), i64> {
    // SAFETY: the helper calls `step`, a static function of this object, with a null context.
    let rc = unsafe { bpf_loop(n, step as *mut c_void, core::ptr::null_mut(), 0) };
    if rc < 0 {
        return Err(rc);
    }
    match work() {
        Some(w) if !w.fault => Ok(()),
        _ => Err(-14),
    }
}

/// A step's outcome as `bpf_loop` wants it; a fault stops the loop and is recorded.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn flow(w: &mut Work, r: Result<Flow, Fault>) -> i64 {
    if let Ok(f) = r {
        return f.code();
    }
    w.fault = true;
    Flow::Stop.code()
}

/// One step of the walk (`veto_rtnl::walk_step`).
#[inline(never)]
extern "C" fn walk_cb(_i: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = work() else { return Flow::Stop.code() };
    let r = walk_step(&Skb(w.data), w);
    flow(w, r)
}

/// Judge link message `i` (`veto_rtnl::judge_msg`); a refusal stops.
#[inline(never)]
extern "C" fn msg_cb(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = work() else { return Flow::Stop.code() };
    let maps = Maps(w.key.netns);
    #[expect(clippy::cast_possible_truncation, reason = "below MAX_LINK_MSGS; masked again by judge_msg")]
    let r = judge_msg(&Skb(w.data), &maps, w, i as u32);
    refusal(w, r)
}

/// Judge recorded mode change `i` (`veto_rtnl::judge_mode_check`); a refusal stops.
#[inline(never)]
extern "C" fn mode_cb(i: u64, _ctx: *mut c_void) -> i64 {
    let Some(w) = work() else { return Flow::Stop.code() };
    #[expect(clippy::cast_possible_truncation, reason = "below MAX_MODE_CHECKS; masked again by judge_mode_check")]
    let r = judge_mode_check(&Skb(w.data), w, i as u32);
    refusal(w, r)
}

/// A judging step's outcome as `bpf_loop` wants it: a refusal or a fault is recorded and stops the loop.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn refusal(w: &mut Work, r: Result<Option<Refusal>, Fault>) -> i64 {
    match r {
        Ok(None) => Flow::Continue.code(),
        Ok(Some(r)) => {
            w.refusal = Some(r);
            Flow::Stop.code()
        }
        Err(Fault) => {
            w.fault = true;
            Flow::Stop.code()
        }
    }
}
