//! The agent's side of the fast words (`exabond_common::fast`): which slot of `FAST_WORDS` each managed
//! bond has, the words its members show when active (`MEMBER_WORDS`), the slots' epochs (the agent half),
//! and the descriptor readers get over the reader socket (`reader_socket.rs`).
//!
//! That descriptor is the map's own (read-write): the kernel cannot map a read-only BPF map descriptor
//! (`mmap` drops `VM_SHARED` for a file without `FMODE_WRITE`, and `bpf_map_mmap` then refuses the mapping
//! with EINVAL, on 6.1 and 6.12). What keeps readers from writing is the page guard's `mmap_file` hook
//! (`exabond-ebpf/src/lsm_page.rs`): a writable mapping of `FAST_WORDS` by anyone but the agent is refused
//! with EACCES, and a read-only mapping cannot be made writable (the kernel drops `VM_MAYWRITE` on it).
//! Without that guard (no BPF LSM), only root peers get the descriptor.
//!
//! The kernel half of a slot is written by the probes only, under RTNL. The agent writes it once, when it
//! hands a free slot to a bond (no probe writes a slot that is in no bond's `BOND_SLOTS` entry), and
//! otherwise asks the kernel to re-derive it: [`request_refresh`] makes the refresh probe run
//! (`exabond-ebpf/src/fast_refresh.rs`). It does so after handing out a slot (a failover between its read of
//! the bond and the map insert is not lost) and whenever a member's word changed.
//!
//! Owner: [`FastWords`], behind the `fast` leaf lock of [`crate::shared::Shared`]. [`sync`] takes the
//! publisher lock, drops it, then takes `fast`: the same order as everything else (publisher before a
//! leaf, never both at once here).

use std::collections::BTreeMap;
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aya::maps::{HashMap, MapData};
use exabond_common::fast::{FAST_ACTIVE, FAST_MAP_BYTES, FAST_SLOTS, FAST_SLOT_SIZE};
use exabond_common::fast_reader::FastState;
use exabond_common::policy_maps::DevKey;
use memmap2::{MmapOptions, MmapRaw};

use crate::shared::Shared;

/// What one managed bond's fast word should be made of (from its page: `Publisher::fast_desired`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The bond.
    pub bond_ifindex: u32,
    /// Its name (the refresh ioctl names it).
    pub name: String,
    /// Its page's legacy word (a new slot starts from it).
    pub page_word: u32,
    /// Its page's active slave (0: none).
    pub page_active: u32,
    /// (member ifindex, the word it shows when active) for every member the page may show active.
    pub members: Vec<(u32, u32)>,
}

/// The maps the loader hands over.
pub struct FastMaps {
    /// `FAST_WORDS` (`BPF_F_MMAPABLE`).
    pub words: MapData,
    /// `BOND_SLOTS`: (namespace, bond ifindex) → slot.
    pub bond_slots: HashMap<MapData, DevKey, u32>,
    /// `MEMBER_WORDS`: (namespace, member ifindex) → word.
    pub member_words: HashMap<MapData, DevKey, u32>,
    /// `FAST_GUARD`: slot 0 = the id of `FAST_WORDS` (the page guard refuses others writable mappings of it).
    pub guard: aya::maps::Array<MapData, u32>,
    /// Whether that guard is in force (the BPF LSM programs attached, `bpf_map_fops` known).
    pub guarded: bool,
}

/// Errors setting up the fast words.
#[derive(Debug, thiserror::Error)]
pub enum FastSetupError {
    /// The map could not be mapped, its descriptor duplicated, or its guard set.
    #[error("FAST_WORDS: {what}: {source}")]
    Map {
        /// What failed.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// The slot to hand to a new bond: a never-used one first (epoch 0), then the free one handed out the
/// fewest times (the lowest epoch), so a reader that still maps a retired slot finds it retired for as
/// long as possible. `None` when every slot is taken.
#[must_use]
pub fn choose_slot(epochs: &[u32], taken: impl Fn(u32) -> bool) -> Option<u32> {
    (0..u32::try_from(epochs.len()).unwrap_or(u32::MAX))
        .filter(|&i| !taken(i) && epochs[i as usize] % 2 == 0)
        .min_by_key(|&i| (epochs[i as usize], i))
}

/// The next epoch: odd (live) from even (free), even (retired) from odd.
#[must_use]
pub const fn next_epoch(e: u32) -> u32 {
    e.wrapping_add(1)
}

/// The agent's view of `FAST_WORDS` and its two companion maps.
pub struct FastWords {
    view: MmapRaw,
    reader_fd: std::sync::Arc<OwnedFd>,
    bond_slots: HashMap<MapData, DevKey, u32>,
    member_words: HashMap<MapData, DevKey, u32>,
    _words: MapData,
    netns: u32,
    /// Bond ifindex → slot.
    slots: BTreeMap<u32, u32>,
    /// What `MEMBER_WORDS` holds (this namespace).
    members: BTreeMap<u32, u32>,
    /// Whether the kernel publishes (the failover probe is attached): epochs odd only then.
    live: bool,
    /// Whether other processes' writable mappings are refused (see the module doc).
    guarded: bool,
}

impl FastWords {
    /// Map `FAST_WORDS` read-write, duplicate its descriptor for readers, set its guard, and take over what a
    /// previous agent left in the pinned maps (its bonds keep their slots and epochs: readers that map
    /// them never notice the restart).
    ///
    /// # Errors
    /// [`FastSetupError`] if the map cannot be mapped or reopened.
    pub fn new(mut maps: FastMaps, netns: u32) -> Result<Self, FastSetupError> {
        let fd = maps.words.fd().as_fd();
        let (id, _) =
            crate::bpf_obj::info(fd).map_err(|source| FastSetupError::Map { what: "cannot read its id", source })?;
        maps.guard.set(0, id, 0).map_err(|e| FastSetupError::Map {
            what: "cannot set FAST_GUARD",
            source: std::io::Error::other(e.to_string()),
        })?;
        let view = MmapOptions::new()
            .len(FAST_MAP_BYTES)
            .map_raw(std::os::fd::AsRawFd::as_raw_fd(&fd))
            .map_err(|source| FastSetupError::Map { what: "cannot map it read-write", source })?;
        let reader_fd = std::sync::Arc::new(
            fd.try_clone_to_owned()
                .map_err(|source| FastSetupError::Map { what: "cannot duplicate its descriptor", source })?,
        );
        let mut slots = BTreeMap::new();
        for (k, slot) in maps.bond_slots.iter().flatten() {
            if k.netns == netns && slot < FAST_SLOTS {
                slots.insert(k.ifindex, slot);
            }
        }
        let members =
            maps.member_words.iter().flatten().filter(|(k, _)| k.netns == netns).map(|(k, w)| (k.ifindex, w)).collect();
        Ok(Self {
            view,
            reader_fd,
            bond_slots: maps.bond_slots,
            member_words: maps.member_words,
            _words: maps.words,
            netns,
            slots,
            members,
            // Not yet: the probes' state is recorded after the start-up's first refresh. Adopted slots keep
            // their (odd) epochs meanwhile; none is handed out until the kernel is known to publish.
            live: false,
            guarded: maps.guarded,
        })
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a page-aligned mapping of 64-byte slots, aligned offsets")]
    fn u32_at(&self, slot: u32, off: usize) -> &AtomicU32 {
        assert!(slot < FAST_SLOTS && off % 4 == 0 && off < FAST_SLOT_SIZE);
        // SAFETY: inside the mapping (slot < FAST_SLOTS), 4-aligned (a page-aligned mapping of 64-byte
        // slots); every access is atomic; the mapping lives as long as `self`.
        unsafe { &*self.view.as_ptr().add(slot as usize * FAST_SLOT_SIZE + off).cast::<AtomicU32>() }
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a page-aligned mapping of 64-byte slots, aligned offsets")]
    fn u64_at(&self, slot: u32, off: usize) -> &AtomicU64 {
        assert!(slot < FAST_SLOTS && off % 8 == 0 && off < FAST_SLOT_SIZE);
        // SAFETY: as above, 8-aligned.
        unsafe { &*self.view.as_ptr().add(slot as usize * FAST_SLOT_SIZE + off).cast::<AtomicU64>() }
    }

    fn epoch(&self, slot: u32) -> u32 {
        self.u32_at(slot, 4).load(Ordering::Acquire)
    }

    fn set_epoch(&self, slot: u32, e: u32) {
        self.u32_at(slot, 4).store(e, Ordering::Release);
    }

    /// Whether a writable mapping by a reader is refused (the guard is in force): if not, only root peers
    /// get the descriptor.
    #[must_use]
    pub const fn guarded(&self) -> bool {
        self.guarded
    }

    /// The descriptor readers get (see the module doc for what keeps them from writing through it).
    #[must_use]
    pub fn reader_fd(&self) -> std::sync::Arc<OwnedFd> {
        self.reader_fd.clone()
    }

    /// The slot and epoch of a managed bond, while the kernel publishes.
    #[must_use]
    pub fn handout(&self, bond_ifindex: u32) -> Option<(u32, u32)> {
        let &slot = self.slots.get(&bond_ifindex)?;
        let e = self.epoch(slot);
        (self.live && e % 2 == 1).then_some((slot, e))
    }

    /// The kernel half of a bond's slot (the poll's check), while the kernel publishes.
    #[must_use]
    pub fn state(&self, bond_ifindex: u32) -> Option<FastState> {
        let &slot = self.slots.get(&bond_ifindex)?;
        if !self.live {
            return None;
        }
        let p = std::ptr::from_ref::<AtomicU32>(self.u32_at(slot, 0));
        // SAFETY: the slot's start in this value's live mapping (64-aligned).
        unsafe { exabond_common::fast_reader::read_slot(p.cast(), 1000) }
    }

    /// Whether the kernel publishes now.
    #[must_use]
    pub const fn is_live(&self) -> bool {
        self.live
    }

    /// Bring the maps to `desired` (every managed bond), `live` saying whether the failover probe is
    /// attached. Returns the bonds whose slot the kernel must re-derive ([`request_refresh`]), and log lines
    /// (map errors) for the caller to write.
    pub fn apply(&mut self, desired: &[Desired], live: bool) -> (Vec<String>, Vec<String>) {
        let mut refresh = Vec::new();
        let mut problems = Vec::new();
        // Bonds no longer managed: their slot goes back (readers that map it see its epoch change).
        let gone: Vec<u32> =
            self.slots.keys().copied().filter(|i| desired.iter().all(|d| d.bond_ifindex != *i)).collect();
        for ifindex in gone {
            if let Err(e) = self.bond_slots.remove(&self.key(ifindex)) {
                if !is_absent(&e) {
                    problems.push(format!("BOND_SLOTS: cannot remove bond {ifindex}: {e}"));
                }
            }
            if let Some(slot) = self.slots.remove(&ifindex) {
                let e = self.epoch(slot);
                if e % 2 == 1 {
                    self.set_epoch(slot, next_epoch(e));
                }
            }
        }
        // Member words (flat: a member belongs to one bond).
        let want: BTreeMap<u32, u32> = desired.iter().flat_map(|d| d.members.iter().copied()).collect();
        let stale: Vec<u32> = self.members.keys().copied().filter(|m| !want.contains_key(m)).collect();
        for m in stale {
            match self.member_words.remove(&self.key(m)) {
                Ok(()) => {}
                Err(e) if is_absent(&e) => {}
                Err(e) => problems.push(format!("MEMBER_WORDS: cannot remove member {m}: {e}")),
            }
            self.members.remove(&m);
        }
        for d in desired {
            let mut changed = false;
            for &(m, w) in &d.members {
                if self.members.get(&m) != Some(&w) {
                    match self.member_words.insert(self.key(m), w, 0) {
                        Ok(()) => {
                            self.members.insert(m, w);
                            changed = true;
                        }
                        Err(e) => problems.push(format!("MEMBER_WORDS: cannot set member {m}: {e}")),
                    }
                }
            }
            if !self.slots.contains_key(&d.bond_ifindex) {
                match self.assign(d) {
                    Ok(()) => changed = true,
                    Err(e) => problems.push(e),
                }
            }
            if changed || (live && !self.live) {
                refresh.push(d.name.clone());
            }
        }
        // Epochs follow whether the kernel publishes: odd once it does, even once it stopped (a slot a previous
        // agent left odd stays as it is until then: readers that map it keep reading it across the restart).
        if live != self.live {
            for &slot in self.slots.values() {
                let e = self.epoch(slot);
                if (e % 2 == 1) != live {
                    self.set_epoch(slot, next_epoch(e));
                }
            }
            self.live = live;
        }
        refresh.dedup();
        (refresh, problems)
    }

    /// Hand a free slot to bond `d`: the kernel half from its page, the agent half, an odd epoch (if the
    /// kernel publishes), then the `BOND_SLOTS` entry, after which only the probes write the kernel half.
    fn assign(&mut self, d: &Desired) -> Result<(), String> {
        let epochs: Vec<u32> = (0..FAST_SLOTS).map(|s| self.epoch(s)).collect();
        let taken: Vec<u32> = self.slots.values().copied().collect();
        let slot = choose_slot(&epochs, |s| taken.contains(&s))
            .ok_or_else(|| format!("FAST_WORDS: no free slot for bond {} ({FAST_SLOTS} in use)", d.name))?;
        let seq = self.u64_at(slot, 8);
        let s = seq.load(Ordering::Relaxed);
        let s = s + (s & 1);
        seq.store(s + 1, Ordering::Release);
        self.u32_at(slot, 16).store(d.page_active, Ordering::Relaxed);
        self.u32_at(slot, 20).store(if d.page_active == 0 { 0 } else { FAST_ACTIVE }, Ordering::Relaxed);
        self.u64_at(slot, 24).store(0, Ordering::Relaxed);
        self.u64_at(slot, 32).store(0, Ordering::Relaxed);
        self.u32_at(slot, 40).store(d.page_active, Ordering::Relaxed);
        self.u32_at(slot, 44).store(d.bond_ifindex, Ordering::Relaxed);
        self.u32_at(slot, 48).store(self.netns, Ordering::Relaxed);
        seq.store(s + 2, Ordering::Release);
        self.u32_at(slot, 0).store(d.page_word, Ordering::Release);
        let e = epochs[slot as usize];
        if self.live {
            self.set_epoch(slot, next_epoch(e));
        }
        self.bond_slots
            .insert(self.key(d.bond_ifindex), slot, 0)
            .map_err(|e| format!("BOND_SLOTS: cannot set bond {}: {e}", d.name))?;
        self.slots.insert(d.bond_ifindex, slot);
        Ok(())
    }

    const fn key(&self, ifindex: u32) -> DevKey {
        DevKey { netns: self.netns, ifindex }
    }
}

fn is_absent(e: &aya::maps::MapError) -> bool {
    matches!(e, aya::maps::MapError::KeyNotFound)
        || matches!(e, aya::maps::MapError::SyscallError(s) if s.io_error.raw_os_error() == Some(libc::ENOENT))
}

/// Ask the kernel to re-derive the fast word of bond `name` (in the agent's namespace): an
/// `ETHTOOL_GDRVINFO` ioctl on it runs the refresh probe under RTNL.
pub fn request_refresh(name: &str) {
    if crate::sysinfo::driver_of(name).is_none() {
        tracing::debug!(bond = name, "fast word refresh: ETHTOOL_GDRVINFO failed (the bond is going?)");
    }
}

/// Bring the fast words to what the pages say (after a manage, an unmanage or a refresh), then ask the
/// kernel to re-derive the slots that need it. Takes `publisher`, then (after dropping it) `fast`.
pub fn sync(shared: &Shared) {
    let Some(fast) = shared.fast() else { return };
    let desired = shared.publisher().fast_desired();
    let live = shared.counters.probe() == crate::failover_probes::ProbeState::Attached;
    let (refresh, problems) = fast.lock().apply(&desired, live);
    for p in problems {
        tracing::error!("fast words: {p}");
    }
    for name in refresh {
        request_refresh(&name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_never_used_first_then_the_least_reused() {
        let mut epochs = vec![0u32; 4];
        assert_eq!(choose_slot(&epochs, |_| false), Some(0));
        assert_eq!(choose_slot(&epochs, |s| s == 0), Some(1));
        // Slot 0 handed out and retired twice (epoch 4), slot 1 once (2), 2 live (3), 3 never (0).
        epochs = vec![4, 2, 3, 0];
        assert_eq!(choose_slot(&epochs, |_| false), Some(3), "a never-used slot first");
        epochs[3] = 1; // now live
        assert_eq!(choose_slot(&epochs, |_| false), Some(1), "then the least reused free one");
        assert_eq!(choose_slot(&epochs, |s| s == 1), Some(0));
        assert_eq!(choose_slot(&[1, 3], |_| false), None, "all live");
        assert_eq!(next_epoch(0) % 2, 1);
        assert_eq!(next_epoch(1) % 2, 0);
    }
}
