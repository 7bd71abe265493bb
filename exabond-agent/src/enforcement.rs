//! Keeps the enforcement maps equal to what the policy says: member verdicts for every device on the host,
//! the managed bonds (by ifindex and name) and their guarded sysfs files. Owner of the member verdicts and
//! of the set of devices they forbid as active slave ([`ForbiddenSet`], handed to the publisher by
//! `Shared::change_verdicts`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aya::maps::MapError;
use exabond_common::policy_maps::{DevKey, GuardedFile, NameKey, PageInode, FILE_MODE, FILE_SLAVES};
use netlink_packet_route::link::LinkMessage;

mod audit;

use crate::bond_view::{self, BondView};
use crate::ebpf_loader::EnforcementMaps;
use crate::policy::{DeviceInfo, MemberPolicy, Verdict};
use crate::sysinfo;

/// How vetoes are enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// BPF LSM programs refuse the operation in the kernel.
    LsmVeto,
    /// No BPF LSM: forbidden changes are detected (rtnetlink, poll, mode kprobe) and reverted.
    DetectAndRevert,
}

impl Mode {
    /// Name for logs and status.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::LsmVeto => "lsm-veto",
            Self::DetectAndRevert => "detect-and-revert",
        }
    }
}

/// The devices never published as the active slave: those the member policy refuses and, once the
/// verdicts of a full dump are known, every device without a verdict yet (created an instant ago, not yet
/// judged: it may be enslaved behind the veto's back before its notification is read).
///
/// Computed by [`Enforcement`] alone, from its verdicts; only this module builds a non-empty one. The
/// publisher keeps a read-only copy, replaced whole (an `Arc` swap) by `Shared::change_verdicts` under the
/// enforcement lock, so the eBPF event thread checks it holding the publisher lock only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForbiddenSet {
    refused: Arc<BTreeSet<u32>>,
    /// The devices with a verdict; `None` (the default) until the first full dump was judged.
    judged: Option<Arc<BTreeSet<u32>>>,
}

impl ForbiddenSet {
    /// Whether device `ifindex` is refused, or not judged yet (0, "no device", never is).
    #[must_use]
    pub fn contains(&self, ifindex: u32) -> bool {
        self.refused.contains(&ifindex) || (ifindex != 0 && self.judged.as_ref().is_some_and(|j| !j.contains(&ifindex)))
    }
}

/// A failure to place a bond under the vetoes.
#[derive(Debug, thiserror::Error)]
pub enum EnforcementError {
    /// A guarded sysfs file cannot be stat'ed.
    #[error("stat {}: {source}", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A map cannot be written.
    #[error("enforcement map {map}: {source}")]
    Map {
        /// The map.
        map: &'static str,
        /// The cause.
        source: MapError,
    },
}

#[derive(Clone, Debug)]
struct LinkEntry {
    /// The primary name, then the alternative names (all resolve to the device in the kernel).
    names: Vec<String>,
    verdict: Verdict,
}

/// The policy state and the maps that carry it to the kernel.
pub struct Enforcement {
    maps: Option<EnforcementMaps>,
    /// The agent's network namespace (inode number): its devices are the ones judged and managed; the
    /// maps are keyed by (namespace, ifindex/name) so the same numbers in other namespaces are not ours.
    netns: u32,
    policy: MemberPolicy,
    links: BTreeMap<u32, LinkEntry>,
    managed: BTreeMap<u32, String>,
    /// The forbidden set last handed out by [`Enforcement::forbidden_update`].
    forbidden_handed: ForbiddenSet,
    /// A full dump was judged ([`Enforcement::sync_all`]): devices without a verdict are forbidden.
    judged_all: bool,
    /// How vetoes are enforced.
    pub mode: Mode,
}

/// Log a failed map update, naming the map.
fn warn_map<E: std::fmt::Display>(map: &str, r: Result<(), E>) {
    if let Err(e) = r {
        tracing::error!("enforcement map {map}: {e}");
    }
}

/// Whether a map error only says that the key is not there.
fn is_absent(e: &MapError) -> bool {
    match e {
        MapError::KeyNotFound => true,
        MapError::SyscallError(s) => s.io_error.raw_os_error() == Some(libc::ENOENT),
        _ => false,
    }
}

/// Log a failed map removal, naming the map; a key already absent is not a failure (the entry is gone
/// either way).
fn warn_remove(map: &str, r: Result<(), MapError>) {
    match r {
        Err(e) if !is_absent(&e) => tracing::error!("enforcement map {map}: remove: {e}"),
        _ => {}
    }
}

/// For `filter_map` over a map's keys or entries: the item, or `None` with the failure logged (naming the
/// map).
fn listed<T>(map: &'static str) -> impl FnMut(Result<T, MapError>) -> Option<T> {
    move |r| r.map_err(|e| tracing::error!("enforcement map {map}: listing: {e}")).ok()
}

/// A map update for [`Enforcement::manage`], its failure naming the map.
fn map_write(map: &'static str, r: Result<(), MapError>) -> Result<(), EnforcementError> {
    r.map_err(|source| EnforcementError::Map { map, source })
}

impl Enforcement {
    /// `maps` is `None` with `--no-ebpf`.
    #[must_use]
    pub fn new(maps: Option<EnforcementMaps>, policy: MemberPolicy, mode: Mode) -> Self {
        Self {
            maps,
            netns: sysinfo::own_netns(),
            policy,
            links: BTreeMap::new(),
            managed: BTreeMap::new(),
            forbidden_handed: ForbiddenSet::default(),
            judged_all: false,
            mode,
        }
    }

    /// The map key of device `ifindex` of the agent's namespace.
    const fn dev(&self, ifindex: u32) -> DevKey {
        DevKey { netns: self.netns, ifindex }
    }

    /// The map key of a name in the agent's namespace (`None`: no device can have it).
    fn name_key(&self, name: &str) -> Option<NameKey> {
        NameKey::new(self.netns, name.as_bytes())
    }

    /// The member policy.
    #[must_use]
    pub const fn policy(&self) -> &MemberPolicy {
        &self.policy
    }

    /// Device info for the policy: kind from rtnetlink, driver from `ETHTOOL_GDRVINFO`.
    #[must_use]
    pub fn device_info(name: &str, kind: &str) -> DeviceInfo {
        DeviceInfo { name: name.to_owned(), kind: kind.to_owned(), driver: sysinfo::driver_of(name) }
    }

    /// Bonds recorded as managed in the pinned map (from a previous agent), to re-adopt.
    #[must_use]
    pub fn pinned_managed(&self) -> Vec<u32> {
        self.maps
            .as_ref()
            .map(|m| {
                m.managed
                    .keys()
                    .filter_map(listed("managed"))
                    .filter(|k| k.netns == self.netns)
                    .map(|k| k.ifindex)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Update the verdict of one device from its link message (its names: primary and alternative).
    pub fn sync_link(&mut self, msg: &LinkMessage) {
        let ifindex = msg.header.index;
        let Some(name) = bond_view::name(msg) else { return };
        let mut names = vec![name];
        names.extend(bond_view::altnames(msg));
        let kind = bond_view::link_kind(msg);
        if let Some(old) = self.links.get(&ifindex) {
            if old.names == names {
                return; // drivers do not change under a live ifindex
            }
            let old_names = old.names.clone();
            self.remove_names(ifindex, &old_names);
        }
        let verdict = self.policy.verdict(&Self::device_info(&names[0], &kind));
        let (dev, keys) = (self.dev(ifindex), self.name_keys(&names));
        let managed = self.managed.contains_key(&ifindex);
        if let Some(m) = self.maps.as_mut() {
            warn_map("verdict_by_ifindex", m.verdict_by_ifindex.insert(dev, verdict.errno(), 0));
            for k in &keys {
                warn_map("verdict_by_name", m.verdict_by_name.insert(k, verdict.errno(), 0));
                if managed {
                    warn_map("managed_by_name", m.managed_by_name.insert(k, ifindex, 0));
                }
            }
        }
        if managed {
            self.managed.insert(ifindex, names[0].clone());
        }
        tracing::debug!(ifindex, ?names, ?verdict, "member verdict");
        self.links.insert(ifindex, LinkEntry { names, verdict });
    }

    /// The map keys of `names` (names no device can have are left out).
    fn name_keys(&self, names: &[String]) -> Vec<NameKey> {
        names.iter().filter_map(|n| self.name_key(n)).collect()
    }

    /// Drop the name entries of device `ifindex` (verdicts, and the managed-bond names if it is one).
    fn remove_names(&mut self, ifindex: u32, names: &[String]) {
        let keys = self.name_keys(names);
        if let Some(m) = self.maps.as_mut() {
            for k in &keys {
                warn_remove("verdict_by_name", m.verdict_by_name.remove(k));
                if m.managed_by_name.get(k, 0).ok() == Some(ifindex) {
                    warn_remove("managed_by_name", m.managed_by_name.remove(k));
                }
            }
        }
    }

    /// A device disappeared.
    pub fn remove_link(&mut self, ifindex: u32) {
        if let Some(e) = self.links.remove(&ifindex) {
            self.remove_names(ifindex, &e.names);
            let dev = self.dev(ifindex);
            if let Some(m) = self.maps.as_mut() {
                warn_remove("verdict_by_ifindex", m.verdict_by_ifindex.remove(&dev));
            }
        }
    }

    /// Resynchronise every verdict with a full link dump (start-up; drops entries of vanished devices,
    /// and any entry of another namespace, which this agent never wrote for itself).
    pub fn sync_all(&mut self, links: &[LinkMessage]) {
        self.judged_all = true;
        let present: BTreeSet<u32> = links.iter().map(|l| l.header.index).collect();
        for l in links {
            self.sync_link(l);
        }
        let gone: Vec<u32> = self.links.keys().filter(|i| !present.contains(i)).copied().collect();
        for i in gone {
            self.remove_link(i);
        }
        let netns = self.netns;
        let names: BTreeSet<NameKey> = self
            .links
            .values()
            .flat_map(|e| e.names.iter().filter_map(|n| NameKey::new(netns, n.as_bytes())))
            .collect();
        if let Some(m) = self.maps.as_mut() {
            let stale: Vec<DevKey> = m
                .verdict_by_ifindex
                .keys()
                .filter_map(listed("verdict_by_ifindex"))
                .filter(|k| k.netns != netns || !present.contains(&k.ifindex))
                .collect();
            for k in stale {
                warn_remove("verdict_by_ifindex", m.verdict_by_ifindex.remove(&k));
            }
            let stale: Vec<NameKey> =
                m.verdict_by_name.keys().filter_map(listed("verdict_by_name")).filter(|n| !names.contains(n)).collect();
            for n in stale {
                warn_remove("verdict_by_name", m.verdict_by_name.remove(&n));
            }
        }
    }

    /// The verdict of a device, if known.
    #[must_use]
    pub fn verdict(&self, ifindex: u32) -> Option<&Verdict> {
        self.links.get(&ifindex).map(|e| &e.verdict)
    }

    /// The verdict of the device named `name`, if the agent knows one (what the kernel-side veto uses).
    #[must_use]
    pub fn verdict_by_name(&self, name: &str) -> Option<&Verdict> {
        self.links.values().find(|e| e.names.iter().any(|n| n == name)).map(|e| &e.verdict)
    }

    /// Guard a bond: managed maps and its sysfs `mode`/`slaves` files.
    ///
    /// # Errors
    /// [`EnforcementError`]: a sysfs file cannot be stat'ed or a map cannot be written.
    pub fn manage(&mut self, view: &BondView) -> Result<(), EnforcementError> {
        if let Some(m) = self.maps.as_mut() {
            let sys = Path::new("/sys/class/net").join(&view.name).join("bonding");
            let mut files = Vec::new();
            for (file, kind) in [("mode", FILE_MODE), ("slaves", FILE_SLAVES)] {
                let path = sys.join(file);
                let ino = sysinfo::inode_of(&path).map_err(|source| EnforcementError::Stat { path, source })?;
                files.push((ino, GuardedFile { kind, bond_ifindex: view.ifindex }));
            }
            for (ino, g) in files {
                map_write("guarded", m.guarded.insert(ino, g, 0))?;
            }
        }
        let mut names = vec![view.name.clone()];
        if let Some(e) = self.links.get(&view.ifindex) {
            names.extend(e.names.iter().filter(|n| **n != view.name).cloned());
        }
        let (dev, keys, netns) = (self.dev(view.ifindex), self.name_keys(&names), self.netns);
        if let Some(m) = self.maps.as_mut() {
            for k in &keys {
                map_write("managed_by_name", m.managed_by_name.insert(k, view.ifindex, 0))?;
            }
            map_write("managed", m.managed.insert(dev, 0, 0))?;
            // Last: from here on the vetoes read the maps for this namespace.
            map_write("managed_netns", m.managed_netns.set(0, netns, 0))?;
        }
        self.managed.insert(view.ifindex, view.name.clone());
        Ok(())
    }

    /// Stop guarding a bond (unmanaged or deleted).
    pub fn unmanage(&mut self, ifindex: u32) {
        self.managed.remove(&ifindex);
        let (dev, none_left) = (self.dev(ifindex), self.managed.is_empty());
        if let Some(m) = self.maps.as_mut() {
            warn_remove("managed", m.managed.remove(&dev));
            let names: Vec<NameKey> = m
                .managed_by_name
                .iter()
                .filter_map(listed("managed_by_name"))
                .filter(|(k, i)| *i == ifindex && k.netns == dev.netns)
                .map(|(k, _)| k)
                .collect();
            for n in names {
                warn_remove("managed_by_name", m.managed_by_name.remove(&n));
            }
            if none_left {
                warn_map("managed_netns", m.managed_netns.set(0, 0, 0));
            }
            let inos: Vec<u64> = m
                .guarded
                .iter()
                .filter_map(listed("guarded"))
                .filter(|(_, g)| g.bond_ifindex == ifindex)
                .map(|(i, _)| i)
                .collect();
            for i in inos {
                warn_remove("guarded", m.guarded.remove(&i));
            }
        }
    }

    /// A managed bond was renamed: the name maps follow it. Called on every refresh, so the same name is
    /// a no-op (removing and re-inserting it would open a window in which the ioctl veto does not know the
    /// bond), and a new name goes in before the old one goes out.
    pub fn rename_bond(&mut self, ifindex: u32, new: &str) {
        if let Some(old) = self.managed.insert(ifindex, new.to_owned()) {
            if old == new {
                return;
            }
            let (old_key, new_key) = (self.name_key(&old), self.name_key(new));
            if let Some(m) = self.maps.as_mut() {
                if let Some(k) = new_key {
                    warn_map("managed_by_name", m.managed_by_name.insert(k, ifindex, 0));
                }
                if let Some(k) = old_key {
                    warn_remove("managed_by_name", m.managed_by_name.remove(&k));
                }
            }
        }
    }

    /// Make the page guard's map hold exactly `pages` (inode → bond ifindex, from the publisher): entries
    /// of retired pages, of pages re-created under a new inode, and of a previous agent's pages that are
    /// not managed now go; new pages come in.
    pub fn sync_pages(&mut self, pages: &BTreeMap<PageInode, u32>) {
        let Some(m) = self.maps.as_mut() else { return };
        let present: Vec<(PageInode, u32)> = m.page_inodes.iter().filter_map(listed("page_inodes")).collect();
        for (k, v) in &present {
            if pages.get(k) != Some(v) {
                warn_remove("page_inodes", m.page_inodes.remove(k));
            }
        }
        for (k, v) in pages {
            if !present.contains(&(*k, *v)) {
                warn_map("page_inodes", m.page_inodes.insert(k, v, 0));
            }
        }
    }

    /// Drop guards pinned by a previous agent for bonds that are not managed now.
    pub fn drop_stale_guards(&mut self) {
        let keep: BTreeSet<u32> = self.managed.keys().copied().collect();
        let netns = self.netns;
        if let Some(m) = self.maps.as_mut() {
            let stale: Vec<DevKey> = m
                .managed
                .keys()
                .filter_map(listed("managed"))
                .filter(|k| k.netns != netns || !keep.contains(&k.ifindex))
                .collect();
            for k in stale {
                warn_remove("managed", m.managed.remove(&k));
            }
            if keep.is_empty() {
                warn_map("managed_netns", m.managed_netns.set(0, 0, 0));
            }
            let stale: Vec<u64> = m
                .guarded
                .iter()
                .filter_map(listed("guarded"))
                .filter(|(_, g)| !keep.contains(&g.bond_ifindex))
                .map(|(i, _)| i)
                .collect();
            for i in stale {
                warn_remove("guarded", m.guarded.remove(&i));
            }
            let stale: Vec<NameKey> = m
                .managed_by_name
                .iter()
                .filter_map(listed("managed_by_name"))
                .filter(|(n, i)| n.netns != netns || !keep.contains(i))
                .map(|(n, _)| n)
                .collect();
            for n in stale {
                warn_remove("managed_by_name", m.managed_by_name.remove(&n));
            }
        }
    }

    /// The name of managed bond `ifindex`.
    #[must_use]
    pub fn bond_name(&self, ifindex: u32) -> Option<&str> {
        self.managed.get(&ifindex).map(String::as_str)
    }

    /// The devices the verdicts refuse, and the judged ones once a full dump was.
    fn forbidden(&self) -> ForbiddenSet {
        let refused = self.links.iter().filter(|(_, e)| e.verdict != Verdict::Allowed).map(|(&i, _)| i).collect();
        let judged = self.judged_all.then(|| Arc::new(self.links.keys().copied().collect()));
        ForbiddenSet { refused: Arc::new(refused), judged }
    }

    /// The forbidden set, if it changed since it was last handed out (the first call hands out any
    /// non-empty set). `Shared::change_verdicts` gives it to the publisher.
    #[must_use]
    pub fn forbidden_update(&mut self) -> Option<ForbiddenSet> {
        let now = self.forbidden();
        if now == self.forbidden_handed {
            return None;
        }
        self.forbidden_handed = now.clone();
        Some(now)
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::LinkAttribute;

    use super::*;

    fn link(index: u32, name: &str) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m
    }

    #[test]
    fn forbidden_set_follows_the_verdicts() {
        // No such devices on the host: no driver, so refused by the default policy.
        let mut e = Enforcement::new(None, MemberPolicy::new(&[]), Mode::DetectAndRevert);
        assert_eq!(e.forbidden_update(), None, "nothing known, nothing to hand out");
        e.sync_link(&link(900_001, "exb-test-a"));
        let set = e.forbidden_update().expect("a new set");
        assert!(set.contains(900_001) && !set.contains(900_002), "before a full dump, unjudged is not forbidden");
        e.sync_all(&[link(900_001, "exb-test-a"), link(900_002, "exb-test-b")]);
        let set = e.forbidden_update().expect("a new set");
        assert!(set.contains(900_001) && set.contains(900_002));
        assert!(set.contains(900_003), "after a full dump, a device without a verdict yet is forbidden");
        assert!(!set.contains(0), "no device is not a forbidden one");
        e.sync_link(&link(900_002, "exb-test-b"));
        assert_eq!(e.forbidden_update(), None, "unchanged: not handed out again");
        e.remove_link(900_001);
        let set = e.forbidden_update().expect("changed");
        assert!(!set.refused.contains(&900_001) && set.contains(900_002));
        assert!(set.contains(900_001), "gone, so without a verdict: still never published");
        e.sync_all(&[]);
        let set = e.forbidden_update().expect("emptied");
        assert_eq!(set.refused.len(), 0, "no refused device left");
        assert!(set.contains(900_002), "gone, so unjudged: still never published");
    }

    #[test]
    fn judged_and_allowed_is_not_forbidden() {
        // A policy that allows devices whose driver cannot be read (these names do not exist on the host).
        let mut e = Enforcement::new(None, MemberPolicy::new(&[String::new()]), Mode::LsmVeto);
        e.sync_all(&[link(900_001, "exb-test-a")]);
        let set = e.forbidden_update().expect("a new set: judged devices");
        assert!(!set.contains(900_001), "judged and allowed");
        assert!(set.contains(900_002), "not judged yet");
        e.sync_link(&link(900_002, "exb-test-b"));
        assert!(!e.forbidden_update().expect("900_002 judged").contains(900_002));
    }

    #[test]
    fn absent_keys_are_not_failures() {
        let enoent = aya::sys::SyscallError {
            call: "bpf_map_delete_elem",
            io_error: std::io::Error::from_raw_os_error(libc::ENOENT),
        };
        assert!(is_absent(&MapError::KeyNotFound));
        assert!(is_absent(&MapError::SyscallError(enoent)));
        let eperm = aya::sys::SyscallError {
            call: "bpf_map_delete_elem",
            io_error: std::io::Error::from_raw_os_error(libc::EPERM),
        };
        assert!(!is_absent(&MapError::SyscallError(eperm)));
    }
}
