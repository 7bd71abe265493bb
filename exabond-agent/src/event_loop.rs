//! The eBPF event consumer: a dedicated thread blocked in poll(2) on the ring buffer (and on aya-log's),
//! applying failovers to the pages directly, without a hop through the async runtime. It takes the publisher
//! lock only to write the page, and logs, records the latency and emits after releasing it; it never takes
//! the enforcement lock (a refused device is checked in the publisher's own copy of the forbidden set). With
//! [`Wait::BusyPoll`] (`exabond agent --busy-poll [CPU]`) the thread instead spins on the ring buffer's
//! producer position (a load from the shared mapping, no syscall), optionally pinned to one CPU: it costs a
//! whole CPU and removes the kernel's wake-up of the consumer from the failover path.

use std::os::fd::{AsFd as _, AsRawFd as _};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use aya::maps::{MapData, RingBuf};
use exabond_common::event::Event;

use crate::shared::Shared;

/// How often the thread checks for shutdown while idle.
const IDLE_POLL_MS: i32 = 1000;

/// Busy-poll mode: aya-log's ring is drained every this many empty spins of the event ring (a few ms).
const BUSY_LOG_EVERY: u32 = 1 << 16;

/// How the consumer thread waits for records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Wait {
    /// Waiters blocked in poll(2) until the kernel wakes them, one per CPU the agent may run on, pinned and
    /// `SCHED_FIFO` (no CPU while idle); see [`spawn`].
    #[default]
    Block,
    /// Spinning on the ring buffer (a whole CPU), pinned to `cpu` when given.
    BusyPoll {
        /// The CPU to pin the thread to (`sched_setaffinity`), if any.
        cpu: Option<usize>,
    },
}

/// Start the consumer. It stops when `stop` is set; the handle returned ends after every thread of it.
///
/// [`Wait::Block`] (the default): one waiter thread per CPU the agent may run on, each pinned to its CPU
/// and `SCHED_FIFO`, all blocked in poll(2) on the ring buffer. The kernel wakes every waiter when the probe
/// submits a record (from an `irq_work` on the CPU that ran `bond_change_active_slave`); the waiter of that
/// CPU is already there and preempts the kernel's normal-priority work at its next preemption point, so
/// the page is published before the kernel gets to send its own rtnetlink notification. A single waiter
/// loses that race whenever it sleeps on another CPU (the remote wake-up is the slow part). The waiters
/// take turns on the ring (a mutex); the others find it empty. Restrict the agent's CPU affinity (e.g.
/// systemd `CPUAffinity=`) to keep waiters off isolated trading cores. `EXABOND_EVENT_WAIT=single` (for
/// benchmarks) gives the previous design: one normal-priority thread.
///
/// # Errors
/// If the thread cannot be spawned.
pub fn spawn(
    mut events: RingBuf<MapData>,
    mut logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    wait: Wait,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("exabond-events".into()).spawn(move || {
        if let Wait::BusyPoll { cpu } = wait {
            busy_poll(&mut events, logger.as_mut(), &shared, &stop, cpu);
            return;
        }
        let single = std::env::var("EXABOND_EVENT_WAIT").is_ok_and(|v| v == "single");
        let cpus = if single { Vec::new() } else { allowed_cpus() };
        let ring_fd = events.as_fd().as_raw_fd();
        let ring = Arc::new(Mutex::new(events));
        let mut helpers = Vec::new();
        for &cpu in cpus.iter().skip(1) {
            let (ring, shared, stop) = (ring.clone(), shared.clone(), stop.clone());
            let t = std::thread::Builder::new().name(format!("exabond-ev/{cpu}")).spawn(move || {
                let _ = pin_to_cpu(cpu);
                realtime(false);
                wait_loop(ring_fd, &ring, None, &shared, &stop);
            });
            match t {
                Ok(t) => helpers.push(t),
                Err(e) => tracing::error!("cannot start the eBPF event waiter for CPU {cpu}: {e}"),
            }
        }
        if let Some(&cpu) = cpus.first() {
            if let Err(e) = pin_to_cpu(cpu) {
                tracing::warn!("cannot pin the eBPF event waiter to CPU {cpu}: {e}");
            }
            realtime(true);
            tracing::info!(cpus = ?cpus, "eBPF event waiters: one per CPU, SCHED_FIFO {RT_PRIORITY}");
        } else {
            tracing::info!("eBPF event waiter: one thread, normal priority (EXABOND_EVENT_WAIT=single)");
        }
        wait_loop(ring_fd, &ring, logger.as_mut(), &shared, &stop);
        for t in helpers {
            let _ = t.join();
        }
    })
}

/// One waiter: poll(2) on the ring (and on aya-log's ring for the waiter that has the logger), drain.
fn wait_loop(
    ring_fd: std::os::fd::RawFd,
    ring: &Mutex<RingBuf<MapData>>,
    mut logger: Option<&mut aya_log::EbpfLogger<&'static dyn log::Log>>,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let mut fds = vec![libc::pollfd { fd: ring_fd, events: libc::POLLIN, revents: 0 }];
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
        if n > 0 && fds[0].revents != 0 {
            let mut events = ring.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            while let Some(item) = events.next() {
                handle(&item, shared);
            }
        }
        if let Some(l) = logger.as_mut() {
            l.flush();
        }
    }
}

/// The CPUs this process may run on (`sched_getaffinity`); empty if unknown.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: `set` is a valid cpu_set_t and every index is < CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

/// Apply one ring buffer record.
fn handle(item: &[u8], shared: &Shared) {
    match Event::decode(item) {
        Ok(Event::Failover(ev)) => {
            // The guard is a temporary: dropped at the end of this statement, before the report.
            let outcome = shared.publisher().on_failover(&ev);
            shared.report(outcome.into_notes());
        }
        Ok(Event::Veto(v)) => {
            // Counted before the event is out: a watcher that sees it and asks for the status sees the count.
            shared.vetoes.count(v.bond_ifindex);
            shared.emit(veto_event(&v));
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

/// The busy-poll loop: drain the ring whenever its producer position moves, never sleep.
fn busy_poll(
    events: &mut RingBuf<MapData>,
    mut logger: Option<&mut aya_log::EbpfLogger<&'static dyn log::Log>>,
    shared: &Shared,
    stop: &AtomicBool,
    cpu: Option<usize>,
) {
    match cpu.map(pin_to_cpu) {
        Some(Err(e)) => tracing::error!("--busy-poll: cannot pin the event thread to CPU {}: {e}", cpu.unwrap_or(0)),
        Some(Ok(())) => tracing::info!(cpu, "event thread busy-polling the eBPF ring buffer, pinned"),
        None => tracing::info!("event thread busy-polling the eBPF ring buffer (not pinned)"),
    }
    let mut idle = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let mut got = false;
        while let Some(item) = events.next() {
            handle(&item, shared);
            got = true;
        }
        idle = if got { 0 } else { idle.wrapping_add(1) };
        if got || idle % BUSY_LOG_EVERY == 0 {
            if let Some(l) = logger.as_mut() {
                l.flush();
            }
        }
        std::hint::spin_loop();
    }
}

/// `SCHED_FIFO` priority of the blocked event thread: above every normal thread (it preempts them the moment
/// the kernel wakes it), below the kernel's threaded interrupt handlers (50).
const RT_PRIORITY: i32 = 10;

/// Make the calling thread `SCHED_FIFO` (best effort: without `CAP_SYS_NICE` it stays a normal thread; `warn`
/// says so in the log).
fn realtime(warn: bool) {
    let p = libc::sched_param { sched_priority: RT_PRIORITY };
    // SAFETY: pid 0 is the calling thread; `p` is a valid sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &raw const p) };
    if rc != 0 && warn {
        tracing::warn!(
            "eBPF event waiters stay SCHED_OTHER (SCHED_FIFO refused: {}): failovers may reach the page later",
            std::io::Error::last_os_error()
        );
    }
}

/// Pin the calling thread to `cpu`.
fn pin_to_cpu(cpu: usize) -> std::io::Result<()> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(std::io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t and `cpu` < CPU_SETSIZE (checked above).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
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

fn veto_event(v: &exabond_common::event::VetoEvent) -> crate::agent_events::AgentEvent {
    use exabond_common::event::VetoWhat;
    let what = VetoWhat::from_u32(v.what);
    crate::agent_events::AgentEvent::Veto {
        bond_ifindex: v.bond_ifindex,
        what: what.map_or("unknown", VetoWhat::describe),
        detail: match what {
            Some(VetoWhat::ModeNetlink) => format!("mode {}", v.detail[0]),
            _ => cstr(&v.detail).to_owned(),
        },
        errno: v.errno,
        pid: v.header.tgid,
        comm: cstr(&v.header.comm).to_owned(),
    }
}
