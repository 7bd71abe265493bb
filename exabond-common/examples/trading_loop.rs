//! A trading loop that follows the active link of a bond through its exabond page.
//!
//! `cargo run -p exabond-common --example trading_loop -- bond0 [page_dir]`
//!
//! The hot loop costs one load and compare per iteration (`changed()`); only when the legacy word moves
//! does it take a consistent snapshot (a seqlocked copy, no syscall) and re-point its "device handle".
//! It also checks the agent's heartbeat now and then, and notices a retired page (bond unmanaged, deleted
//! or renamed), which is when a real process would reopen by name or fall back to the kernel path.

use std::path::Path;
use std::time::{Duration, Instant};

use exabond_common::page::DEFAULT_PAGE_DIR;
use exabond_common::reader::PageReader;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let bond = args.next().ok_or("usage: trading_loop BOND [PAGE_DIR]")?;
    let dir = args.next().unwrap_or_else(|| DEFAULT_PAGE_DIR.to_owned());
    let mut page = PageReader::open_in(Path::new(&dir), &bond)?;

    // Where "orders go" now: the active slave's ifindex (a real stack would resolve its NIC handle here).
    let mut tx_ifindex = page.snapshot()?.active_ifindex;
    println!("start: bond {bond}, active ifindex {tx_ifindex}");
    let mut last_health_check = Instant::now();
    loop {
        // ---- hot path: one atomic load + compare ----
        if page.changed() {
            let s = page.snapshot()?; // consistent copy; never torn
            tx_ifindex = s.active_ifindex;
            match s.active_name() {
                Some(name) => println!(
                    "failover #{}: now on {name} (ifindex {tx_ifindex}, seen first by {})",
                    s.failover_count,
                    s.source().as_str()
                ),
                None => println!("no active link: hold orders"),
            }
        }
        // ... send/receive on `tx_ifindex` ...

        // ---- cold path, every 100 ms: is the agent alive, is the page still current? ----
        if last_health_check.elapsed() > Duration::from_millis(100) {
            last_health_check = Instant::now();
            let s = page.snapshot()?;
            if s.is_retired() {
                println!("page retired (bond unmanaged, deleted or renamed): reopen by name or stop");
                return Ok(());
            }
            if page.is_stale(Duration::from_secs(1))? {
                println!("agent heartbeat stale: the page may lag the kernel; alert the operator");
            }
        }
        std::hint::spin_loop();
    }
}
