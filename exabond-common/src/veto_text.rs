//! How the kernel reads what is written to a bond's sysfs `bonding/mode` and `bonding/slaves` files and
//! the names in a bonding ioctl's `struct ifreq`, written once for the eBPF vetoes and the host tests.
//!
//! Fixed-size buffers and bounded loops only (the eBPF verifier must see every bound). Where the bytes
//! the veto read do not decide the question, the answer is [`ModeText::Bound`] / [`SlavesText::Bound`]:
//! the veto refuses (fail closed).
//!
//! The kernel's reading (drivers/net/bonding, 6.1 and 6.12):
//! - sysfs store: `kstrndup(buf, count)`: the text ends at the first NUL.
//! - `mode` (`bond_opt_parse`): cut at the first `\n`; if every character is a digit or a space the value
//!   is `sscanf("%llu")` (leading spaces skipped, the first run of digits), else the first word
//!   (`sscanf("%32s")`) is compared with the mode names. Active-backup is `1` or `active-backup`; the
//!   file's own output (`active-backup 1`) is accepted as written.
//! - `slaves` (`bond_option_slaves_set`): `sscanf("%16s")`: leading spaces skipped, then `+name` or
//!   `-name` of at most 15 characters (a longer word is cut at 15), looked up in the bond's namespace.
//! - Spaces are the kernel's `isspace`: `' '`, `\t`, `\n`, `\v`, `\f`, `\r` and 0xA0 (lib/ctype.c).

use crate::policy_maps::IfName;

/// Bytes of a sysfs write the vetoes read (the kernel takes up to a page; what matters comes first).
pub const TEXT_LEN: usize = 64;

/// The kernel's `isspace` (lib/ctype.c: 9–13, 32 and 160).
#[must_use]
pub const fn is_kspace(c: u8) -> bool {
    c == b' ' || (c >= 9 && c <= 13) || c == 0xa0
}

/// What a write to `bonding/mode` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeText {
    /// Active-backup (or text the driver rejects whatever follows, which changes nothing either).
    ActiveBackup,
    /// Another mode, or text the driver rejects.
    Other,
    /// The bytes read do not decide (the value runs past them): refuse.
    Bound,
}

/// What a write to `bonding/slaves` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlavesText {
    /// `+name`: enslave the device of that name (NUL-padded, at most 15 bytes as the driver cuts it).
    Enslave(IfName),
    /// `-name`, or text the driver rejects: nothing joins the bond.
    NoEnslave,
    /// The bytes read do not decide: refuse.
    Bound,
}

/// Indices kept in memory between the scans. The eBPF side keeps this in a per-CPU map: a scan that
/// returns the index where it stopped gives the verifier one path per index, and the next scan multiplies
/// them; an index stored in map memory and loaded back is one unknown value again, so the paths merge.
pub struct Scan {
    v: [usize; 4],
}

impl Scan {
    /// Zeroed.
    #[must_use]
    pub const fn new() -> Self {
        Self { v: [0; 4] }
    }

    /// Store `value` in slot `slot` and load it back (volatile: the compiler must not keep the constant).
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants"
    )]
    pub fn keep(&mut self, slot: usize, value: usize) -> usize {
        let p = &raw mut self.v[slot & 3];
        // SAFETY: a field of a live exclusive reference.
        unsafe {
            core::ptr::write_volatile(p, value);
            core::ptr::read_volatile(p)
        }
    }
}

impl Default for Scan {
    fn default() -> Self {
        Self::new()
    }
}

/// Where the written text ends within `buf`: (end, whether the kernel's text ends there). `count` is
/// what the writer passed; `buf` holds its first bytes.
///
/// The scans below are loops with one early exit and no flags carried between iterations, so the eBPF
/// verifier explores one path per exit point instead of one per combination of flags.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
const fn text_end(buf: &[u8; TEXT_LEN], count: u64, newline_ends: bool) -> (usize, bool) {
    let mut i = 0;
    while i < TEXT_LEN {
        let c = buf[i & (TEXT_LEN - 1)];
        if i as u64 >= count || c == 0 || (newline_ends && c == b'\n') {
            return (i, true);
        }
        i += 1;
    }
    (TEXT_LEN, count <= TEXT_LEN as u64)
}

/// The first index in `[from, end)` whose byte is (`space`) or is not (`!space`) a space; `end` if none.
/// The loop counts from `from` (no test of the index against `from`): the verifier then sees one state
/// per iteration instead of one per (iteration, start) pair.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
const fn find(buf: &[u8; TEXT_LEN], from: usize, end: usize, space: bool) -> usize {
    let mut k = 0;
    while k < TEXT_LEN {
        let i = from + k;
        if i >= end {
            return end;
        }
        if is_kspace(buf[i & (TEXT_LEN - 1)]) == space {
            return i;
        }
        k += 1;
    }
    end
}

/// Whether `buf[s..s + 13]` is `active-backup`.
#[inline(always)]
const fn is_ab_at(buf: &[u8; TEXT_LEN], s: usize) -> bool {
    const AB: &[u8; 13] = b"active-backup";
    let mut k = 0;
    while k < 13 {
        if buf[(s + k) & (TEXT_LEN - 1)] != AB[k] {
            return false;
        }
        k += 1;
    }
    true
}

/// Whether `buf[s..e]` (a word of at most [`TEXT_LEN`] bytes) is digits whose value, wrapping at 2^64 as
/// the kernel's `%llu` does, is 1.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[expect(clippy::many_single_char_names, reason = "s(tart), e(nd) of the word, k: indices of one scan")]
const fn is_one_at(buf: &[u8; TEXT_LEN], s: usize, e: usize) -> bool {
    let mut value: u64 = 0;
    let mut k = 0;
    while k < TEXT_LEN {
        let i = s + k;
        if i >= e {
            break;
        }
        // Masked: the index is in range anyway, and the mask keeps the compiler from leaving a bounds
        // check (a panic path the verifier refuses) after it reshapes the loop.
        let c = buf[i & (TEXT_LEN - 1)];
        if !c.is_ascii_digit() {
            return false;
        }
        value = value.wrapping_mul(10).wrapping_add((c - b'0') as u64);
        k += 1;
    }
    value == 1
}

/// How the driver reads `buf` (the first bytes of a `count`-byte write) written to `bonding/mode`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[must_use]
pub fn mode_text(buf: &[u8; TEXT_LEN], count: u64, scan: &mut Scan) -> ModeText {
    let (end, ended) = text_end(buf, count, true);
    let end = scan.keep(0, end);
    let s = scan.keep(1, find(buf, 0, end, false));
    // Each scan's exits refine what the verifier knows of `end` differently: forget it again.
    let end = scan.keep(0, end);
    if s >= end {
        // Blank: the driver rejects it; unless the text goes on past what was read.
        return if ended { ModeText::Other } else { ModeText::Bound };
    }
    let e = scan.keep(2, find(buf, s, end, true));
    let (s, end) = (scan.keep(1, s), scan.keep(0, end));
    if e >= end && !ended {
        return ModeText::Bound;
    }
    // A word of digits: the numeric reading (1 = active-backup) or, if something else follows, a name
    // that matches nothing; either way only 1 can mean active-backup.
    if (e - s == 13 && is_ab_at(buf, s)) || is_one_at(buf, s, e) {
        ModeText::ActiveBackup
    } else {
        ModeText::Other
    }
}

/// How the driver reads `buf` (the first bytes of a `count`-byte write) written to `bonding/slaves`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[must_use]
pub fn slaves_text(buf: &[u8; TEXT_LEN], count: u64, scan: &mut Scan) -> SlavesText {
    let (end, ended) = text_end(buf, count, false);
    let end = scan.keep(0, end);
    let s = scan.keep(1, find(buf, 0, end, false));
    let end = scan.keep(0, end);
    if s >= end {
        return if ended { SlavesText::NoEnslave } else { SlavesText::Bound };
    }
    if buf[s & (TEXT_LEN - 1)] != b'+' {
        return SlavesText::NoEnslave; // "-name" releases; anything else the driver rejects
    }
    // "%16s": '+' and at most 15 characters; the rest of a longer word is not read.
    let limit = if s + 16 < end { s + 16 } else { end };
    let e = scan.keep(2, find(buf, s + 1, limit, true));
    let (s, end) = (scan.keep(1, s), scan.keep(0, end));
    if e >= end && e < s + 16 && !ended {
        return SlavesText::Bound;
    }
    if e <= s + 1 {
        return SlavesText::NoEnslave; // "+" alone: the driver rejects it
    }
    let mut name = [0u8; 16];
    let mut k = 0;
    while k < 15 {
        if s + 1 + k >= e {
            break;
        }
        name[k] = buf[(s + 1 + k) & (TEXT_LEN - 1)];
        k += 1;
    }
    SlavesText::Enslave(name)
}

/// The names in a bonding ioctl's `struct ifreq` (its first 32 bytes: `ifr_name`, then `ifr_slave` in
/// the union) as `dev_ioctl` and the driver resolve them: the bond name cut at byte 15, at the first NUL
/// and at the first `:` (an alias suffix); the member name up to its NUL (`None` if it has none in 16
/// bytes: no device has such a name).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[must_use]
pub const fn ifreq_names(ifr: &[u8; 32]) -> (IfName, Option<IfName>) {
    let mut bond = [0u8; 16];
    let mut member = [0u8; 16];
    let mut bond_done = false;
    let mut member_done = false;
    let mut i = 0;
    while i < 16 {
        let b = ifr[i];
        if i == 15 || b == 0 || b == b':' {
            bond_done = true;
        }
        if !bond_done {
            bond[i] = b;
        }
        let m = ifr[16 + i];
        if m == 0 {
            member_done = true;
        }
        if !member_done {
            member[i] = m;
        }
        i += 1;
    }
    (bond, if member_done { Some(member) } else { None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(s: &[u8]) -> ([u8; TEXT_LEN], u64) {
        let mut b = [0u8; TEXT_LEN];
        let n = s.len().min(TEXT_LEN);
        b[..n].copy_from_slice(&s[..n]);
        (b, s.len() as u64)
    }

    fn mode(s: &[u8]) -> ModeText {
        let (b, c) = buf(s);
        mode_text(&b, c, &mut Scan::new())
    }

    fn slaves(s: &[u8]) -> SlavesText {
        let (b, c) = buf(s);
        slaves_text(&b, c, &mut Scan::new())
    }

    fn name(s: &str) -> IfName {
        let mut n = [0u8; 16];
        n[..s.len()].copy_from_slice(s.as_bytes());
        n
    }

    #[test]
    fn mode_spellings() {
        for ok in [
            &b"active-backup"[..],
            b"active-backup\n",
            b"active-backup 1\n",
            b"1",
            b"1\n",
            b"  1",
            b"01",
            b"\tactive-backup",
            b"active-backup\0balance-rr",
            b"1\nbalance-rr",
            b"18446744073709551617", // 2^64 + 1: the kernel's %llu wraps
            b"\xa0active-backup\xa0",
        ] {
            assert_eq!(mode(ok), ModeText::ActiveBackup, "{}", String::from_utf8_lossy(ok));
        }
        for other in [
            &b"balance-rr"[..],
            b"0",
            b"2",
            b"balance-rr 0",
            b" 0",
            b"default",
            b"active-backupx",
            b"active-",
            b"active-\nbackup",
            b"",
            b"   ",
            b"\n1",
            b"+1",
        ] {
            assert_eq!(mode(other), ModeText::Other, "{}", String::from_utf8_lossy(other));
        }
        // Past what the veto reads: undecided, refused.
        let mut long = vec![b' '; 100];
        long.extend_from_slice(b"active-backup");
        assert_eq!(mode(&long), ModeText::Bound);
        assert_eq!(mode(&[b'1'; 70]), ModeText::Bound);
        // A first word complete within the bytes read decides, whatever follows.
        let mut tail = b"active-backup ".to_vec();
        tail.extend_from_slice(&[b'x'; 100]);
        assert_eq!(mode(&tail), ModeText::ActiveBackup);
    }

    #[test]
    fn slaves_commands() {
        assert_eq!(slaves(b"+eth0"), SlavesText::Enslave(name("eth0")));
        assert_eq!(slaves(b"+eth0\n"), SlavesText::Enslave(name("eth0")));
        assert_eq!(slaves(b"  \t+eth0"), SlavesText::Enslave(name("eth0")), "leading blanks are skipped");
        assert_eq!(slaves(b"+eth0 +eth1"), SlavesText::Enslave(name("eth0")));
        assert_eq!(slaves(b"+abcdefghijklmnopq"), SlavesText::Enslave(name("abcdefghijklmno")), "cut at 15");
        assert_eq!(slaves(b"+eth0\0junk"), SlavesText::Enslave(name("eth0")));
        assert_eq!(slaves(b"-eth0"), SlavesText::NoEnslave);
        assert_eq!(slaves(b"eth0"), SlavesText::NoEnslave);
        assert_eq!(slaves(b"+"), SlavesText::NoEnslave);
        assert_eq!(slaves(b""), SlavesText::NoEnslave);
        let mut long = vec![b' '; 100];
        long.extend_from_slice(b"+eth0");
        assert_eq!(slaves(&long), SlavesText::Bound);
        let mut cut = vec![b' '; 60];
        cut.extend_from_slice(b"+eth0");
        assert_eq!(slaves(&cut), SlavesText::Bound, "the name runs past the bytes read");
    }

    #[test]
    fn ifreq() {
        let mut ifr = [0u8; 32];
        ifr[..7].copy_from_slice(b"bond0:1");
        ifr[16..20].copy_from_slice(b"eth0");
        assert_eq!(ifreq_names(&ifr), (name("bond0"), Some(name("eth0"))));
        let mut ifr = [b'a'; 32];
        ifr[20] = 0;
        let (b, m) = ifreq_names(&ifr);
        assert_eq!(b, name("aaaaaaaaaaaaaaa"), "ifr_name[15] is forced to NUL");
        assert_eq!(m, Some(name("aaaa")));
        assert_eq!(ifreq_names(&[b'a'; 32]).1, None);
    }

    // ---- models of the driver, written the plain way, and property tests against them ----

    /// `bond_opt_parse` for the mode option: `Some(mode)` accepted, `None` rejected.
    fn model_mode(written: &[u8]) -> Option<u64> {
        const NAMES: [&str; 7] =
            ["balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb"];
        let s: Vec<u8> = written.iter().copied().take_while(|&c| c != 0 && c != b'\n').collect();
        let sp = |c: &u8| is_kspace(*c);
        if s.iter().all(|c| c.is_ascii_digit() || sp(c)) {
            let digits: Vec<u8> = s.iter().copied().skip_while(sp).take_while(u8::is_ascii_digit).collect();
            if digits.is_empty() {
                return None;
            }
            let v = digits.iter().fold(0u64, |v, d| v.wrapping_mul(10).wrapping_add(u64::from(d - b'0')));
            return (v < 7).then_some(v);
        }
        let word: Vec<u8> = s.iter().copied().skip_while(sp).take_while(|c| !sp(c)).take(32).collect();
        if word == b"default" {
            return Some(0);
        }
        NAMES.iter().position(|n| n.as_bytes() == word.as_slice()).map(|i| i as u64)
    }

    /// `bond_option_slaves_set`: the name of a `+name` command the driver would look up.
    fn model_slaves(written: &[u8]) -> Option<Vec<u8>> {
        let s: Vec<u8> = written.iter().copied().take_while(|&c| c != 0).collect();
        let word: Vec<u8> =
            s.iter().copied().skip_while(|c| is_kspace(*c)).take_while(|c| !is_kspace(*c)).take(16).collect();
        (word.len() > 1 && word[0] == b'+').then(|| word[1..].to_vec())
    }

    fn arb_text() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just(b"active-backup".to_vec()),
            Just(b"balance-rr".to_vec()),
            Just(b"default".to_vec()),
            Just(b"1".to_vec()),
            Just(b"0".to_vec()),
            Just(b"+eth0".to_vec()),
            Just(b"+bad".to_vec()),
            Just(b"-eth0".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\t".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\0".to_vec()),
            Just(vec![0xa0]),
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(b'0'..=b'9', 1..22),
        ];
        proptest::collection::vec(piece, 0..6).prop_map(|v| v.concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, ..Default::default() })]

        /// The veto never refuses a spelling the driver accepts as active-backup, and never lets another
        /// mode through.
        #[test]
        fn mode_matches_the_driver(t in arb_text()) {
            let got = mode(&t);
            match model_mode(&t) {
                Some(1) => proptest::prop_assert!(got != ModeText::Other, "{t:?}: refused active-backup"),
                Some(m) => proptest::prop_assert!(got != ModeText::ActiveBackup, "{t:?}: let mode {m} through"),
                None => {}
            }
            if t.len() <= TEXT_LEN {
                proptest::prop_assert!(got != ModeText::Bound);
            }
        }

        /// The veto looks up exactly the name the driver would enslave.
        #[test]
        fn slaves_match_the_driver(t in arb_text()) {
            let got = slaves(&t);
            match model_slaves(&t) {
                Some(n) => {
                    let mut want = [0u8; 16];
                    want[..n.len()].copy_from_slice(&n);
                    proptest::prop_assert!(got == SlavesText::Enslave(want) || got == SlavesText::Bound, "{t:?}: {got:?}");
                }
                None => proptest::prop_assert!(!matches!(got, SlavesText::Enslave(_)) || t.len() > TEXT_LEN, "{t:?}: {got:?}"),
            }
        }
    }
}
