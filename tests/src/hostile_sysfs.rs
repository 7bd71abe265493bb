//! Hostile-input class D: the managed bonds' sysfs `bonding/slaves` and `bonding/mode` written as the driver
//! reads them (it skips leading blanks, takes the whole of a writev as one value, accepts the mode's own
//! output and other spellings of active-backup) and through every write path (writev, pwritev, a buffer not
//! yet faulted in, splice from a pipe). Where the driver's own refusal could pass for the veto's, the form is
//! first shown to work on the unmanaged bond `hfree`.

use anyhow::ensure;

use crate::enforce::slaves_path;
use crate::hostile::{
    done, enslaved_then_release, failed_with, is_member, release, unchanged, B, D, E, ENODEV, EOPNOTSUPP, FAIL_CLOSED,
    U, V,
};
use crate::hostile_io::{pwritev_parts, splice_into, write_from, write_once, writev_parts, Unfaulted};
use crate::lab::{bond_mode, read_sysfs};
use crate::suite::Suite;

fn mode_path(b: &str) -> String {
    format!("/sys/class/net/{b}/bonding/mode")
}

/// A write to `hfree`'s slaves that the kernel applies (the dummy joins); released again.
fn control(what: &str, r: Result<(), i32>) -> anyhow::Result<()> {
    let ok = done(&format!("control on the unmanaged bond: {what}"), r);
    let joined = is_member(U, D);
    if joined {
        release(U, D)?;
    }
    ok?;
    ensure!(joined, "control on the unmanaged bond: {what} succeeded but {D} did not join {U}");
    Ok(())
}

/// The class's checks.
pub fn run(s: &mut Suite) {
    let (bs, us) = (slaves_path(B), slaves_path(U));

    for (n, text) in [" +hdum", "  +hdum\n", "\t+hdum"].into_iter().enumerate() {
        s.check(
            &format!("hostile D1.{n}: slaves {text:?} (leading blanks, skipped by the driver) → refused ENODEV"),
            || {
                control(&format!("{text:?}"), write_once(&us, text.as_bytes()))?;
                unchanged(|| failed_with(&format!("{text:?} > {bs}"), write_once(&bs, text.as_bytes()), &[ENODEV]))
            },
        );
    }

    let refused_parts: [(&str, &[&[u8]]); 3] =
        [("writev", &[b"+", b"hdum\n"]), ("pwritev", &[b"+", b"hdum\n"]), ("writev", &[b"+h", b"du", b"m"])];
    for (n, (call, parts)) in refused_parts.into_iter().enumerate() {
        let what = format!("{call}({:?})", parts.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>());
        s.check(&format!("hostile D2.{n}: slaves {what} of the refused dummy → refused ENODEV"), || {
            let w = |p: &str| if call == "writev" { writev_parts(p, parts) } else { pwritev_parts(p, parts) };
            control(&what, w(&us))?;
            unchanged(|| failed_with(&format!("{what} > {bs}"), w(&bs), &[ENODEV]))
        });
    }

    let allowed_parts: [(&str, &[&[u8]]); 3] =
        [("writev", &[b"+", b"hv0"]), ("pwritev", &[b"+hv", b"0\n"]), ("write", &[b" +hv0\n"])];
    for (n, (call, parts)) in allowed_parts.into_iter().enumerate() {
        let what = format!("{call}({:?})", parts.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>());
        s.check(&format!("hostile D3.{n}: slaves {what} of an allowed veth → succeeds"), || {
            let r = match call {
                "writev" => writev_parts(&bs, parts),
                "pwritev" => pwritev_parts(&bs, parts),
                _ => write_once(&bs, parts[0]),
            };
            let ok = done(&format!("{what} > {bs}"), r);
            if ok.is_err() && is_member(B, V[0]) {
                release(B, V[0])?;
            }
            ok?;
            enslaved_then_release(B, V[0])
        });
    }

    s.check("hostile D4: slaves \"+hdum\" written from a page not yet faulted in → refused (fail closed)", || {
        let text = b"+hdum\n";
        let m = Unfaulted::new(text)?;
        control("+hdum from an unfaulted page", write_from(&us, &m, text.len()))?;
        let m = Unfaulted::new(text)?;
        unchanged(|| {
            failed_with(&format!("+hdum from an unfaulted page > {bs}"), write_from(&bs, &m, text.len()), FAIL_CLOSED)
        })
    });

    s.check("hostile D5: slaves \"+hdum\" spliced from a pipe → refused EOPNOTSUPP (uninspectable)", || {
        control("splice +hdum", splice_into(&us, b"+hdum\n")?)?;
        unchanged(|| failed_with(&format!("splice +hdum > {bs}"), splice_into(&bs, b"+hdum\n")?, &[EOPNOTSUPP]))
    });

    let own = bond_mode(E);
    let accepted: [(String, Vec<&[u8]>); 7] = [
        (format!("its own output {own:?}"), vec![own.as_bytes()]),
        ("\"1\"".into(), vec![b"1"]),
        ("\"  1\"".into(), vec![b"  1"]),
        ("\"01\"".into(), vec![b"01"]),
        ("\"active-backup\\n\"".into(), vec![b"active-backup\n"]),
        ("\"\\tactive-backup\"".into(), vec![b"\tactive-backup"]),
        ("writev([\"active-\", \"backup\"])".into(), vec![b"active-", b"backup"]),
    ];
    for (n, (what, parts)) in accepted.into_iter().enumerate() {
        s.check(
            &format!("hostile D6.{n}: {E}/mode {what} (active-backup as the driver reads it) → succeeds"),
            || {
                ensure!(own == "active-backup 1", "{E} mode before: {own:?}");
                let r = if parts.len() > 1 {
                    writev_parts(&mode_path(E), &parts)
                } else {
                    write_once(&mode_path(E), parts[0])
                };
                done(&format!("{what} > {E}/mode"), r)?;
                ensure!(bond_mode(E) == "active-backup 1", "{E} mode after: {}", bond_mode(E));
                Ok(())
            },
        );
    }

    let refused: [(&str, &[&[u8]]); 6] = [
        ("\"balance-rr\"", &[b"balance-rr"]),
        ("\"0\"", &[b"0"]),
        ("\"2\"", &[b"2"]),
        ("\"balance-rr 0\"", &[b"balance-rr 0"]),
        ("writev([\"0\"])", &[b"0"]),
        ("\" 0\"", &[b" 0"]),
    ];
    for (n, (what, parts)) in refused.into_iter().enumerate() {
        s.check(&format!("hostile D7.{n}: {E}/mode {what} → refused EOPNOTSUPP, mode unchanged"), || {
            let r = |p: &str| if what.starts_with("writev") { writev_parts(p, parts) } else { write_once(p, parts[0]) };
            unchanged(|| failed_with(&format!("{what} > {E}/mode"), r(&mode_path(E)), &[EOPNOTSUPP]))?;
            ensure!(read_sysfs(&mode_path(E))? == "active-backup 1", "{E} mode {}", bond_mode(E));
            Ok(())
        });
    }
}
