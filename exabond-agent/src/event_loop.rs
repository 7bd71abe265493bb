//! The eBPF event consumer: a dedicated thread blocked in poll(2) on the ring buffer (and on aya-log's),
//! applying failovers to the pages directly, without a hop through the async runtime.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aya::maps::{MapData, RingBuf};
use exabond_common::event::Event;

use crate::publisher::Publisher;

/// How often the thread checks for shutdown while idle.
const IDLE_POLL_MS: i32 = 100;

/// Start the consumer thread. It stops when `stop` is set.
///
/// # Errors
/// If the thread cannot be spawned.
pub fn spawn(
    mut events: RingBuf<MapData>,
    mut logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    publisher: Arc<Mutex<Publisher>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("exabond-events".into()).spawn(move || {
        let mut fds = vec![libc::pollfd { fd: events.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if let Some(l) = &logger {
            fds.push(libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, IDLE_POLL_MS) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("poll on the eBPF ring buffer failed: {e}");
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                continue;
            }
            while let Some(item) = events.next() {
                match Event::decode(&item) {
                    Ok(Event::Failover(ev)) => {
                        let mut p = publisher.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        p.on_failover(&ev);
                    }
                    Ok(Event::Veto(v)) => {
                        publisher.lock().unwrap_or_else(std::sync::PoisonError::into_inner).count_veto(v.bond_ifindex);
                        log_veto(&v);
                    }
                    Ok(Event::ModeSet(m)) => tracing::warn!(
                        bond_ifindex = m.bond_ifindex,
                        mode = m.mode,
                        pid = m.header.tgid,
                        comm = %cstr(&m.header.comm),
                        "bonding mode of a managed bond is being changed"
                    ),
                    Err(e) => tracing::error!("eBPF event: {e}"),
                }
            }
            if let Some(l) = logger.as_mut() {
                l.flush();
            }
        }
    })
}

fn cstr(b: &[u8]) -> &str {
    exabond_common::page::cstr(b)
}

fn log_veto(v: &exabond_common::event::VetoEvent) {
    use exabond_common::event::VetoWhat;
    let what = VetoWhat::from_u32(v.what);
    let detail = match what {
        Some(VetoWhat::ModeNetlink) => format!("mode {}", v.detail[0]),
        _ => cstr(&v.detail).to_owned(),
    };
    tracing::warn!(
        what = what.map_or("unknown", VetoWhat::describe),
        bond_ifindex = v.bond_ifindex,
        member_ifindex = v.member_ifindex,
        detail = %detail,
        errno = v.errno,
        pid = v.header.tgid,
        comm = %cstr(&v.header.comm),
        "VETO: refused an operation on a managed bond"
    );
}
