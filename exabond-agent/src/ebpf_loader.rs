//! Loading and attaching the eBPF programs, and the handles the agent keeps on their maps.
//!
//! Maps are pinned by name under [`PIN_DIR`]; the BPF LSM links are pinned there too (`link-<hook>`), so
//! the vetoes keep working while the agent is down, and a restarted agent reuses the same maps (its
//! managed bonds) and replaces the links without a gap (new link attached before the old pin is removed).

use std::path::{Path, PathBuf};

use aya::maps::{Array, HashMap, MapData, RingBuf};
use aya::programs::kprobe::KProbeLinkId;
use aya::programs::{links::FdLink, KProbe, Lsm};
use aya::{Btf, Ebpf, EbpfLoader};
use exabond_common::policy_maps::{AgentId, DevKey, GuardedFile, NameKey, PageInode, PIN_DIR};

/// The compiled eBPF object (built by build.rs from exabond-ebpf).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/exabond"));

/// The eBPF object built into the agent.
#[cfg(test)]
#[must_use]
pub fn object() -> &'static [u8] {
    OBJECT
}

/// Kernel function probed for failovers.
pub const FAILOVER_FN: &str = "bond_change_active_slave";
/// Kernel function probed to audit mode changes.
pub const MODE_SET_FN: &str = "bond_option_mode_set";
/// Kernel function probed for fast-word refreshes (the bonding driver's `ETHTOOL_GDRVINFO` handler).
pub const REFRESH_FN: &str = "bond_ethtool_get_drvinfo";
/// LSM hooks attached where the kernel has them: `file_ioctl_compat` (the 32-bit ioctl path has its own
/// hook from 6.8, backported to some stable kernels; without it the compat path calls `file_ioctl`).
pub const OPTIONAL_LSM_HOOKS: [&str; 1] = ["file_ioctl_compat"];

/// The BPF LSM hooks used for vetoes (the bond guards, then the page guard of `lsm_page.rs`).
pub const LSM_HOOKS: [&str; 9] = [
    "file_permission",
    "netlink_send",
    "file_ioctl",
    "file_open",
    "inode_setattr",
    "inode_unlink",
    "inode_rename",
    "mmap_file",
    "file_mprotect",
];

/// Errors while loading the eBPF side.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Offsets could not be read from BTF.
    #[error(transparent)]
    Offsets(#[from] crate::btf_offsets::OffsetsError),
    /// The object could not be loaded.
    #[error(
        "cannot load the eBPF object: {0} (run as root, or with CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN + CAP_SYS_ADMIN)"
    )]
    Load(#[source] aya::EbpfError),
    /// A map pinned by another agent version could not be checked or replaced.
    #[error("{0:#} (stop every exabond agent and remove {PIN_DIR})")]
    Layout(anyhow::Error),
    /// A program could not be loaded or attached.
    #[error("cannot attach {what}: {source}")]
    Program {
        /// Which program/hook.
        what: String,
        /// The cause.
        source: aya::programs::ProgramError,
    },
    /// A map is missing or of the wrong type (object and agent out of sync).
    #[error("eBPF map {name}: {source}")]
    Map {
        /// The map.
        name: &'static str,
        /// The cause.
        source: aya::maps::MapError,
    },
    /// A map or program is missing from the object.
    #[error("{0} is missing from the eBPF object")]
    Missing(&'static str),
    /// The pin directory could not be prepared, or a link pinned.
    #[error("{what} {path}: {source}")]
    Pin {
        /// What failed.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Kernel BTF for the LSM programs.
    #[error("cannot read the kernel's BTF for the LSM programs: {0}")]
    Btf(#[source] aya::BtfError),
}

/// The enforcement maps (all pinned).
pub struct EnforcementMaps {
    /// Bonds under management (bond ifindex → 0).
    pub managed: HashMap<MapData, DevKey, u32>,
    /// Managed bonds by name → ifindex.
    pub managed_by_name: HashMap<MapData, NameKey, u32>,
    /// Guarded sysfs files by inode.
    pub guarded: HashMap<MapData, u64, GuardedFile>,
    /// Member verdict by ifindex.
    pub verdict_by_ifindex: HashMap<MapData, DevKey, u32>,
    /// Member verdict by name.
    pub verdict_by_name: HashMap<MapData, NameKey, u32>,
    /// The bond pages (page guard): inode → bond ifindex.
    pub page_inodes: HashMap<MapData, PageInode, u32>,
    /// The agent process the page guard lets write (slot 0).
    pub agent: Array<MapData, AgentId>,
    /// `MANAGED_NETNS`: slot 0 = the namespace whose bonds are managed (0 = none).
    pub managed_netns: Array<MapData, u32>,
}

/// The loaded programs and the maps the agent uses.
pub struct Loaded {
    /// Keeps the kprobes attached while alive.
    pub ebpf: Ebpf,
    /// Records from the programs.
    pub events: RingBuf<MapData>,
    /// The enforcement maps.
    pub maps: EnforcementMaps,
    /// Whether the LSM programs are attached (false when the BPF LSM is not active).
    pub lsm: bool,
    /// The struct offsets baked into the object (`OFFSETS`).
    pub offsets: exabond_common::offsets::KernelOffsets,
    /// The kprobes on bonding functions, in [`KPROBES`] order: their links go with the module.
    pub kprobe_links: Vec<KProbeLinkId>,
    /// The fast words' maps.
    pub fast: crate::fast_words::FastMaps,
}

/// The kprobes on functions of the bonding module: (program, kernel function).
pub const KPROBES: [(&str, &str); 3] = [
    ("bond_change_active_slave", FAILOVER_FN),
    ("bond_option_mode_set", MODE_SET_FN),
    ("bond_ethtool_get_drvinfo", REFRESH_FN),
];

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    T::try_from(ebpf.take_map(name).ok_or(LoadError::Missing(name))?).map_err(|source| LoadError::Map { name, source })
}

fn kprobe_program<'a>(ebpf: &'a mut Ebpf, name: &'static str, func: &str) -> Result<&'a mut KProbe, LoadError> {
    ebpf.program_mut(name)
        .ok_or(LoadError::Missing(name))?
        .try_into()
        .map_err(|source| LoadError::Program { what: format!("kprobe {func}"), source })
}

fn kprobe(ebpf: &mut Ebpf, name: &'static str, func: &str) -> Result<KProbeLinkId, LoadError> {
    let what = || format!("kprobe {func}");
    let prog = kprobe_program(ebpf, name, func)?;
    prog.load().map_err(|source| LoadError::Program { what: what(), source })?;
    prog.attach(func, 0).map_err(|source| LoadError::Program { what: what(), source })
}

/// Attach the (loaded) kprobe `name` at `func` again, after the bonding module was unloaded and loaded
/// again (a kprobe on a module function goes with the module). The old link, if any, is detached first;
/// an error detaching it (its probe already gone) is ignored.
///
/// # Errors
/// [`LoadError`] if the program is missing or the attach fails.
pub fn reattach_kprobe(
    ebpf: &mut Ebpf,
    name: &'static str,
    func: &str,
    old: Option<KProbeLinkId>,
) -> Result<KProbeLinkId, LoadError> {
    let prog = kprobe_program(ebpf, name, func)?;
    if let Some(id) = old {
        if let Err(e) = prog.detach(id) {
            tracing::debug!(func, "detaching the old kprobe link: {e}");
        }
    }
    prog.attach(func, 0).map_err(|source| LoadError::Program { what: format!("kprobe {func}"), source })
}

/// Path of the pinned link of an LSM hook.
#[must_use]
pub fn link_pin(hook: &str) -> PathBuf {
    Path::new(PIN_DIR).join(format!("link-{hook}"))
}

/// The program of the object that implements `hook` on this kernel: named after the hook, except
/// `inode_setattr`, whose argument list changed in 6.3 (see `exabond-ebpf/src/lsm_page.rs`).
fn program_for(hook: &'static str, offsets: &exabond_common::offsets::KernelOffsets) -> &'static str {
    match hook {
        "inode_setattr" if offsets.inode_setattr_dentry_arg == 0 => "inode_setattr_v61",
        _ => hook,
    }
}

fn lsm(ebpf: &mut Ebpf, hook: &'static str, program: &'static str, btf: &Btf) -> Result<(), LoadError> {
    let what = || format!("BPF LSM hook {hook}");
    let prog: &mut Lsm = ebpf
        .program_mut(program)
        .ok_or(LoadError::Missing(program))?
        .try_into()
        .map_err(|source| LoadError::Program { what: what(), source })?;
    let t0 = std::time::Instant::now();
    prog.load(hook, btf).map_err(|source| LoadError::Program { what: what(), source })?;
    tracing::debug!(hook, program, ms = t0.elapsed().as_millis(), "BPF LSM program verified and loaded");
    let id = prog.attach().map_err(|source| LoadError::Program { what: what(), source })?;
    let link = prog.take_link(id).map_err(|source| LoadError::Program { what: what(), source })?;
    let fd_link: FdLink = link.into();
    // The new link is attached: now drop the previous agent's pin (its link detaches) and pin ours.
    let path = link_pin(hook);
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::info!(hook, "replaced the pinned LSM link of a previous agent"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(LoadError::Pin { what: "cannot remove the old link pin", path, source }),
    }
    fd_link.pin(&path).map_err(|e| LoadError::Pin {
        what: "cannot pin the LSM link",
        path,
        source: std::io::Error::other(e.to_string()),
    })?;
    Ok(())
}

/// Load the object with offsets from `btf_dir`, attach the probes (and the LSM vetoes when `with_lsm`),
/// take the maps.
///
/// # Errors
/// [`LoadError`] with what failed and the usual fix.
pub fn load(btf_dir: &Path, with_lsm: bool) -> Result<Loaded, LoadError> {
    let (offsets, optional_hooks) = crate::btf_offsets::read_with_hooks(btf_dir, &OPTIONAL_LSM_HOOKS)?;
    tracing::info!(?offsets, "kernel struct offsets from BTF");
    std::fs::create_dir_all(PIN_DIR).map_err(|source| LoadError::Pin {
        what: "cannot create the pin directory (is bpffs mounted at /sys/fs/bpf?)",
        path: PIN_DIR.into(),
        source,
    })?;
    crate::pin_layout::retire_stale(Path::new(PIN_DIR), OBJECT).map_err(LoadError::Layout)?;
    let rtnl = crate::sysinfo::kernel_symbol("rtnl_mutex").unwrap_or_else(|| {
        tracing::warn!(
            "rtnl_mutex not found in /proc/kallsyms (kptr_restrict?): the kernel cannot re-derive fast words on \
             request; they follow failovers only"
        );
        0
    });
    let map_fops = crate::sysinfo::kernel_symbol("bpf_map_fops").unwrap_or_else(|| {
        tracing::warn!(
            "bpf_map_fops not found in /proc/kallsyms: writable mappings of the fast words by other processes \
             cannot be refused; readers that are not root get no fast word"
        );
        0
    });
    let mut ebpf = EbpfLoader::new()
        // Statistics in the verifier's log: a refused program says how far it got (instructions, states).
        // `EXABOND_VERIFIER_LOG=verbose` (development): the whole log of a refused program.
        .verifier_log_level(if std::env::var_os("EXABOND_VERIFIER_LOG").is_some_and(|v| v == "verbose") {
            aya::VerifierLogLevel::DEBUG | aya::VerifierLogLevel::STATS
        } else {
            aya::VerifierLogLevel::STATS
        })
        .override_global("OFFSETS", &offsets, true)
        .override_global("RTNL_MUTEX", &rtnl, true)
        .override_global("BPF_MAP_FOPS", &map_fops, true)
        .default_map_pin_directory(PIN_DIR)
        .load(OBJECT)
        .map_err(LoadError::Load)?;
    let mut kprobe_links = Vec::with_capacity(KPROBES.len());
    for (name, func) in KPROBES {
        kprobe_links.push(kprobe(&mut ebpf, name, func)?);
    }
    if with_lsm {
        let btf = Btf::from_sys_fs().map_err(LoadError::Btf)?;
        for hook in LSM_HOOKS {
            lsm(&mut ebpf, hook, program_for(hook, &offsets), &btf)?;
        }
        for hook in OPTIONAL_LSM_HOOKS {
            if optional_hooks.contains(&hook) {
                lsm(&mut ebpf, hook, hook, &btf)?;
            } else {
                tracing::info!(hook, "this kernel has no such LSM hook: not attached");
            }
        }
    }
    let events = take(&mut ebpf, "EVENTS")?;
    let maps = EnforcementMaps {
        managed: take(&mut ebpf, "MANAGED_BONDS")?,
        managed_by_name: take(&mut ebpf, "MANAGED_BY_NAME")?,
        guarded: take(&mut ebpf, "GUARDED_FILES")?,
        verdict_by_ifindex: take(&mut ebpf, "VERDICT_BY_IFINDEX")?,
        verdict_by_name: take(&mut ebpf, "VERDICT_BY_NAME")?,
        page_inodes: take(&mut ebpf, "PAGE_INODES")?,
        agent: take(&mut ebpf, "AGENT")?,
        managed_netns: take(&mut ebpf, "MANAGED_NETNS")?,
    };
    let words = match ebpf.take_map("FAST_WORDS") {
        Some(aya::maps::Map::Array(d)) => d,
        Some(_) => {
            return Err(LoadError::Map {
                name: "FAST_WORDS",
                source: aya::maps::MapError::InvalidName { name: "FAST_WORDS".into() },
            })
        }
        None => return Err(LoadError::Missing("FAST_WORDS")),
    };
    let fast = crate::fast_words::FastMaps {
        words,
        bond_slots: take(&mut ebpf, "BOND_SLOTS")?,
        member_words: take(&mut ebpf, "MEMBER_WORDS")?,
        guard: take(&mut ebpf, "FAST_GUARD")?,
        guarded: map_fops != 0 && with_lsm,
    };
    Ok(Loaded { ebpf, events, maps, lsm: with_lsm, offsets, kprobe_links, fast })
}

/// This process as the page guard names it: its PID namespace (device in the kernel's encoding, inode)
/// and its pid there.
///
/// # Errors
/// If `/proc/self/ns/pid` cannot be read.
pub fn agent_id() -> std::io::Result<AgentId> {
    let meta = std::fs::metadata("/proc/self/ns/pid")?;
    let ns = exabond_common::writer::page_inode(&meta);
    Ok(AgentId { pidns_dev: u64::from(ns.dev), pidns_ino: ns.ino, tgid: std::process::id(), _pad: 0 })
}

/// Register this process as the one writer of the pages (before it opens any: a page a previous agent
/// left is guarded against every other process, this one included until it is registered).
///
/// # Errors
/// If the PID namespace cannot be read or the map written.
pub fn register_agent(agent: &mut Array<MapData, AgentId>) -> anyhow::Result<()> {
    let id = agent_id().map_err(|e| anyhow::anyhow!("cannot read /proc/self/ns/pid: {e}"))?;
    agent.set(0, id, 0).map_err(|e| anyhow::anyhow!("cannot write the AGENT map: {e}"))?;
    tracing::debug!(?id, "registered as the pages' writer");
    Ok(())
}

/// Remove every pin (links and maps): enforcement stops once the agent exits. Used by `--release`.
pub fn release_pins() {
    for hook in LSM_HOOKS.iter().chain(&OPTIONAL_LSM_HOOKS) {
        let _ = std::fs::remove_file(link_pin(hook));
    }
    if let Ok(dir) = std::fs::read_dir(PIN_DIR) {
        for e in dir.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let _ = std::fs::remove_dir(PIN_DIR);
}

/// Without loading the programs (`--no-ebpf`): if a previous agent left the page guard pinned, register
/// with it all the same (the guard would otherwise refuse this agent its own pages). Returns whether a
/// pinned guard was found.
///
/// # Errors
/// A pinned `AGENT` map that cannot be opened or written.
pub fn register_with_pinned_guard() -> anyhow::Result<bool> {
    let path = Path::new(PIN_DIR).join("AGENT");
    if !path.exists() {
        return Ok(false);
    }
    let data =
        MapData::from_pin(&path).map_err(|e| anyhow::anyhow!("cannot open the pinned {}: {e}", path.display()))?;
    let mut agent: Array<MapData, AgentId> = Array::try_from(aya::maps::Map::Array(data))
        .map_err(|e| anyhow::anyhow!("the pinned {} is not the page guard's map: {e}", path.display()))?;
    register_agent(&mut agent)?;
    Ok(true)
}
