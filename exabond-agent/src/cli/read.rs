//! `exabond read`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use exabond_common::clock;
use exabond_common::reader::PageReader;

use crate::ifname;
use crate::snapshot_json::SnapshotJson;

/// Arguments of `exabond read`.
#[derive(clap::Args)]
pub struct ReadArgs {
    /// The bond.
    pub bond: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Directory of the pages.
    #[arg(long, value_name = "DIR", default_value = exabond_common::page::DEFAULT_PAGE_DIR)]
    pub page_dir: PathBuf,
    /// A heartbeat older than this (ms) makes the page stale.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub max_age_ms: u64,
    /// Spin on the page until its failover count reaches N, then print the snapshot and when this reader
    /// saw it (`seen_mono_ns`, `kernel_to_reader_us`). Prints `ready` on stderr once mapped.
    #[arg(long, value_name = "N")]
    pub wait_count: Option<u64>,
    /// Give up waiting after this many ms.
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Print one snapshot (or wait for a change first).
///
/// # Errors
/// Bad name, page not there or not an exabond page, timeout.
pub fn run(args: &ReadArgs) -> anyhow::Result<()> {
    ifname::validate(&args.bond).with_context(|| format!("bond {:?}", args.bond))?;
    let reader = PageReader::open_in(&args.page_dir, &args.bond)?;
    let mut seen = None;
    if let Some(n) = args.wait_count {
        eprintln!("ready");
        seen = Some(wait_for_count(&reader, n, Duration::from_millis(args.timeout_ms))?);
    }
    let (seq, data) = reader.snapshot_with_seq()?;
    let snap = SnapshotJson::new(&data, seq, args.max_age_ms);
    let fast = fast_json(&reader);
    if args.json {
        let mut v = serde_json::to_value(&snap)?;
        v["fast"] = fast;
        v["fast_note"] = reader.fast_note().into();
        if let Some(t) = seen {
            v["seen_mono_ns"] = t.into();
            if data.kernel_event_ns != 0 {
                #[expect(clippy::cast_precision_loss, reason = "µs for display")]
                let us = t.saturating_sub(data.kernel_event_ns) as f64 / 1000.0;
                v["kernel_to_reader_us"] = us.into();
            }
        }
        println!("{v}");
    } else {
        print!("{}", snap.to_text());
        match (fast.is_null(), reader.fast_note()) {
            (false, _) => println!(
                "fast word (published by the kernel): slot {} epoch {} word {:#010x} active ifindex {} changes {}",
                fast["slot"],
                fast["epoch"],
                fast["word"].as_u64().unwrap_or(0),
                fast["active_ifindex"],
                fast["changes"]
            ),
            (true, note) => println!("fast word: not read ({})", note.unwrap_or("unknown")),
        }
    }
    Ok(())
}

/// The fast word as the reader sees it (null when it reads the page only).
fn fast_json(reader: &PageReader) -> serde_json::Value {
    let Some(f) = reader.fast().filter(|_| reader.uses_fast()) else { return serde_json::Value::Null };
    match f.state() {
        Ok(st) => serde_json::json!({
            "slot": f.slot(),
            "epoch": f.epoch(),
            "word": st.word,
            "active_ifindex": st.active_ifindex,
            "kernel_ifindex": st.kernel_ifindex,
            "flags": st.flags,
            "kernel_ns": st.kernel_ns,
            "changes": st.changes,
            "seq": st.seq,
        }),
        Err(e) => serde_json::json!({ "slot": f.slot(), "epoch": f.epoch(), "error": e.to_string() }),
    }
}

/// Spin until the page's failover count reaches `n`; returns `CLOCK_MONOTONIC` ns when it was seen.
fn wait_for_count(reader: &PageReader, n: u64, timeout: Duration) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut last_seq = u64::MAX;
    let mut spins = 0u32;
    loop {
        let seq = reader.sequence();
        if seq != last_seq {
            let now = clock::monotonic_ns();
            let d = reader.snapshot()?;
            if d.failover_count >= n {
                return Ok(now);
            }
            last_seq = seq;
        }
        spins = spins.wrapping_add(1);
        if spins % 4096 == 0 {
            if start.elapsed() > timeout {
                bail!("timed out after {} ms waiting for failover count {n}", timeout.as_millis());
            }
            std::thread::yield_now();
        }
        core::hint::spin_loop();
    }
}
