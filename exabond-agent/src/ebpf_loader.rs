//! Loading and attaching the eBPF programs, and the handles the agent keeps on their maps.

use std::path::Path;

use aya::maps::{HashMap, MapData, RingBuf};
use aya::programs::KProbe;
use aya::{Ebpf, EbpfLoader};

/// The compiled eBPF object (built by build.rs from exabond-ebpf).
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/exabond"));

/// Kernel function probed for failovers.
pub const FAILOVER_FN: &str = "bond_change_active_slave";

/// Errors while loading the eBPF side.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Offsets could not be read from BTF.
    #[error(transparent)]
    Offsets(#[from] crate::btf_offsets::OffsetsError),
    /// The object could not be loaded.
    #[error("cannot load the eBPF object: {0} (run as root, or with CAP_BPF + CAP_PERFMON + CAP_NET_ADMIN)")]
    Load(#[source] aya::EbpfError),
    /// A program could not be loaded or attached.
    #[error("cannot attach {what}: {source}")]
    Program {
        /// Which program/hook.
        what: &'static str,
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
    /// A map is missing from the object.
    #[error("eBPF map {0} is missing from the object")]
    MissingMap(&'static str),
}

/// The loaded programs and the maps the agent uses.
pub struct Loaded {
    /// Keeps programs attached while alive.
    pub ebpf: Ebpf,
    /// Records from the programs.
    pub events: RingBuf<MapData>,
    /// Bonds under management (bond ifindex → 0).
    pub managed: HashMap<MapData, u32, u32>,
}

/// Load the object with offsets from `btf_dir`, attach the failover probe, take the maps.
///
/// # Errors
/// [`LoadError`] with what failed and the usual fix.
pub fn load(btf_dir: &Path) -> Result<Loaded, LoadError> {
    let offsets = crate::btf_offsets::read(btf_dir)?;
    tracing::info!(?offsets, "kernel struct offsets from BTF");
    let mut ebpf = EbpfLoader::new()
        .override_global("OFFSETS", &offsets, true)
        .load(OBJECT)
        .map_err(LoadError::Load)?;
    let prog: &mut KProbe = ebpf
        .program_mut("bond_change_active_slave")
        .ok_or(LoadError::MissingMap("bond_change_active_slave (program)"))?
        .try_into()
        .map_err(|source| LoadError::Program {
            what: "kprobe bond_change_active_slave",
            source,
        })?;
    prog.load().map_err(|source| LoadError::Program {
        what: "kprobe bond_change_active_slave",
        source,
    })?;
    prog.attach(FAILOVER_FN, 0)
        .map_err(|source| LoadError::Program {
            what: "kprobe bond_change_active_slave",
            source,
        })?;
    let events = RingBuf::try_from(
        ebpf.take_map("EVENTS")
            .ok_or(LoadError::MissingMap("EVENTS"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "EVENTS",
        source,
    })?;
    let managed = HashMap::try_from(
        ebpf.take_map("MANAGED_BONDS")
            .ok_or(LoadError::MissingMap("MANAGED_BONDS"))?,
    )
    .map_err(|source| LoadError::Map {
        name: "MANAGED_BONDS",
        source,
    })?;
    Ok(Loaded {
        ebpf,
        events,
        managed,
    })
}
