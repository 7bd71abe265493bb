//! The self-check's look at the enforcement maps: do they hold what the agent wrote? Entries changed, added
//! or removed behind its back (`bpftool map update/delete` on a pinned map) are put back. A child module of
//! `enforcement`, so it reads the agent's own record of what it wrote.

use std::collections::BTreeMap;
use std::path::Path;

use aya::maps::{HashMap, MapData, MapError};
use aya::Pod;
use exabond_common::policy_maps::{DevKey, GuardedFile, NameKey, PageInode, FILE_MODE, FILE_SLAVES};

use super::{is_absent, Enforcement};
use crate::sysinfo;

/// Make `map` hold exactly `want`; each difference found (and put right) is described in `found`, naming
/// `name` and the key; a write that fails is described in `failed`.
fn reconcile<K, V>(
    name: &str,
    map: &mut HashMap<MapData, K, V>,
    want: &BTreeMap<K, V>,
    found: &mut Vec<String>,
    failed: &mut Vec<String>,
) where
    K: Pod + Ord + std::fmt::Debug + 'static,
    V: Pod + PartialEq + std::fmt::Debug,
{
    let present = match list(map) {
        Ok(p) => p,
        Err(e) => {
            failed.push(format!("{name}: cannot list: {e}"));
            return;
        }
    };
    for (k, v) in &present {
        if !want.contains_key(k) {
            found.push(format!("{name}[{}]: entry {v:?} the agent did not write, removed", show(k)));
            if let Err(e) = map.remove(k) {
                if !is_absent(&e) {
                    failed.push(format!("{name}[{}]: cannot remove: {e}", show(k)));
                }
            }
        }
    }
    for (k, v) in want {
        let now = present.get(k).copied();
        if now.as_ref() == Some(v) {
            continue;
        }
        let was = now.map_or_else(|| "missing".to_owned(), |pv| format!("{pv:?}"));
        found.push(format!("{name}[{}]: {was}, rewritten {v:?}", show(k)));
        let r: Result<(), MapError> = map.insert(k, v, 0);
        if let Err(e) = r {
            failed.push(format!("{name}[{}]: cannot rewrite: {e}", show(k)));
        }
    }
}

/// A key for the log: an interface name as text, anything else as `Debug`.
/// Every entry of `map`: in a few `BPF_MAP_LOOKUP_BATCH` calls (walking a map of hundreds of entries, every
/// self-check, costs two system calls an entry), or by walking it where the kernel has no batch lookup.
fn list<K, V>(map: &HashMap<MapData, K, V>) -> Result<BTreeMap<K, V>, String>
where
    K: Pod + Ord,
    V: Pod,
{
    use aya::maps::IterableMap as _;
    use std::os::fd::AsFd as _;
    let (ks, vs) = (size_of::<K>(), size_of::<V>());
    match crate::bpf_obj::dump_hash(map.map().fd().as_fd(), ks, vs) {
        Ok(entries) => Ok(entries
            .into_iter()
            .map(|(k, v)| {
                // SAFETY: Pod types are plain bytes of exactly these sizes (checked by `dump_hash`'s slicing);
                // any bit pattern is a valid K and V.
                unsafe { (k.as_ptr().cast::<K>().read_unaligned(), v.as_ptr().cast::<V>().read_unaligned()) }
            })
            .collect()),
        // No batch operations for this map here (EINVAL, the kernel's ENOTSUPP 524), or a bucket fuller than
        // a batch (ENOSPC): walk it.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSPC | 524)) => {
            map.iter().collect::<Result<BTreeMap<K, V>, _>>().map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn show<K: std::fmt::Debug + 'static>(k: &K) -> String {
    let any: &dyn std::any::Any = k;
    if let Some(k) = any.downcast_ref::<NameKey>() {
        let end = k.name.iter().position(|&b| b == 0).unwrap_or(k.name.len());
        return format!("netns {} {}", k.netns, String::from_utf8_lossy(&k.name[..end]));
    }
    format!("{k:?}")
}

/// What an audit of the maps found: differences put right, and what could not be.
#[derive(Debug, Default)]
pub struct MapAudit {
    /// Differences found and put right.
    pub repaired: Vec<String>,
    /// What could not be read or written.
    pub failed: Vec<String>,
}

impl Enforcement {
    /// Compare the maps with what the agent wrote (the page guard's with the publisher's `pages`) and put
    /// every difference right. Nothing without maps (`--no-ebpf`). `full`: all of them; otherwise only the
    /// small ones every request's fast exit depends on (`AGENT`, `MANAGED_NETNS`, `MANAGED_BONDS`,
    /// `PAGE_INODES`), leaving the per-device maps and the guarded files (hundreds of entries, a `stat` per
    /// file: tens of milliseconds under emulation) to the full audits.
    pub fn audit_maps(&mut self, pages: &BTreeMap<PageInode, u32>, full: bool) -> MapAudit {
        let mut audit = MapAudit::default();
        let netns = self.netns;
        let verdicts: BTreeMap<DevKey, u32> = self
            .links
            .iter()
            .filter(|_| full)
            .map(|(&i, e)| (DevKey { netns, ifindex: i }, e.verdict.errno()))
            .collect();
        let verdict_names: BTreeMap<NameKey, u32> = self
            .links
            .values()
            .filter(|_| full)
            .flat_map(|e| {
                e.names.iter().filter_map(|n| NameKey::new(netns, n.as_bytes())).map(|k| (k, e.verdict.errno()))
            })
            .collect();
        let managed: BTreeMap<DevKey, u32> = self.managed.keys().map(|&i| (DevKey { netns, ifindex: i }, 0)).collect();
        let mut managed_names: BTreeMap<NameKey, u32> = BTreeMap::new();
        for (&i, n) in self.managed.iter().filter(|_| full) {
            let names = self.links.get(&i).map(|e| e.names.clone()).unwrap_or_default();
            for name in names.iter().chain(std::iter::once(n)) {
                if let Some(k) = NameKey::new(netns, name.as_bytes()) {
                    managed_names.insert(k, i);
                }
            }
        }
        let want_netns = if self.managed.is_empty() { 0 } else { netns };
        let mut guarded = BTreeMap::new();
        for (&ifindex, name) in self.managed.iter().filter(|_| full) {
            let sys = Path::new("/sys/class/net").join(name).join("bonding");
            for (file, kind) in [("mode", FILE_MODE), ("slaves", FILE_SLAVES)] {
                match sysinfo::inode_of(&sys.join(file)) {
                    Ok(ino) => {
                        guarded.insert(ino, GuardedFile { kind, bond_ifindex: ifindex });
                    }
                    // The bond is going (deleted or renamed under the agent): the next refresh follows it.
                    Err(_) => return audit,
                }
            }
        }
        let Some(m) = self.maps.as_mut() else { return audit };
        let (found, failed) = (&mut audit.repaired, &mut audit.failed);
        if full {
            reconcile("VERDICT_BY_IFINDEX", &mut m.verdict_by_ifindex, &verdicts, found, failed);
            reconcile("VERDICT_BY_NAME", &mut m.verdict_by_name, &verdict_names, found, failed);
            reconcile("MANAGED_BY_NAME", &mut m.managed_by_name, &managed_names, found, failed);
            reconcile("GUARDED_FILES", &mut m.guarded, &guarded, found, failed);
        }
        reconcile("MANAGED_BONDS", &mut m.managed, &managed, found, failed);
        reconcile("PAGE_INODES", &mut m.page_inodes, pages, found, failed);
        match m.managed_netns.get(&0, 0) {
            Ok(now) if now == want_netns => {}
            now => {
                found.push(format!("MANAGED_NETNS[0]: {now:?}, rewritten {want_netns}"));
                if let Err(e) = m.managed_netns.set(0, want_netns, 0) {
                    failed.push(format!("MANAGED_NETNS[0]: cannot rewrite: {e}"));
                }
            }
        }
        match crate::ebpf_loader::agent_id() {
            Ok(me) => match m.agent.get(&0, 0) {
                Ok(now) if now == me => {}
                now => {
                    found.push(format!("AGENT[0]: {now:?}, rewritten {me:?}"));
                    if let Err(e) = m.agent.set(0, me, 0) {
                        failed.push(format!("AGENT[0]: cannot rewrite: {e}"));
                    }
                }
            },
            Err(e) => failed.push(format!("AGENT: cannot read /proc/self/ns/pid: {e}")),
        }
        audit
    }
}
