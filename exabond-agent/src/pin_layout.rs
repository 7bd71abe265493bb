//! Maps pinned by an agent of another version. Aya reuses a map pinned under the map's name without
//! comparing its layout, so after an upgrade that changed a map's key or value (as the network-namespace
//! keys did), the new programs and the agent would read and write the old map with the new layout:
//! silently wrong verdicts. Before loading, every pinned map whose type, key, value or size differs from
//! the object's is unpinned (and so replaced by a fresh one), and said so in the log.

use std::os::fd::AsFd as _;
use std::path::Path;

use crate::bpf_obj;

/// What must match for a pinned map to be reused: (type, key size, value size, max entries).
pub type Shape = (u32, u32, u32, u32);

/// The maps of `object` that are pinned by name, with their shapes.
///
/// # Errors
/// The object cannot be parsed (a build error).
pub fn expected(object: &[u8]) -> anyhow::Result<Vec<(String, Shape)>> {
    let obj = aya_obj::Object::parse(object).map_err(|e| anyhow::anyhow!("parsing the eBPF object: {e}"))?;
    let mut maps: Vec<(String, Shape)> = obj
        .maps
        .iter()
        .filter(|(_, m)| m.pinning() == aya_obj::maps::PinningType::ByName)
        .map(|(n, m)| (n.clone(), (m.map_type(), m.key_size(), m.value_size(), m.max_entries())))
        .collect();
    maps.sort();
    Ok(maps)
}

/// The pinned maps to replace: those whose found shape (`None`: nothing pinned) differs from the expected.
#[must_use]
pub fn stale(expected: &[(String, Shape)], found: impl Fn(&str) -> Option<Shape>) -> Vec<(&str, Shape, Shape)> {
    expected
        .iter()
        .filter_map(|(name, want)| found(name).filter(|have| have != want).map(|have| (name.as_str(), have, *want)))
        .collect()
}

/// Unpin every map under `dir` whose layout differs from `object`'s, logging each; the names unpinned.
///
/// # Errors
/// The object cannot be parsed, or a stale pin cannot be removed (the load would then reuse it).
pub fn retire_stale(dir: &Path, object: &[u8]) -> anyhow::Result<Vec<String>> {
    let expected = expected(object)?;
    let found = |name: &str| bpf_obj::open_pin(&dir.join(name)).and_then(|fd| bpf_obj::map_shape(fd.as_fd())).ok();
    let mut removed = Vec::new();
    for (name, have, want) in stale(&expected, found) {
        let path = dir.join(name);
        std::fs::remove_file(&path).map_err(|e| {
            anyhow::anyhow!("pinned map {} has another layout and cannot be removed: {e}", path.display())
        })?;
        tracing::warn!(
            map = name,
            "pinned map of another agent version replaced: (type, key, value, entries) {have:?}, this version's {want:?}"
        );
        removed.push(name.to_owned());
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pinned_maps_of_another_shape_are_stale() {
        let want =
            vec![("A".to_owned(), (1, 8, 4, 64)), ("B".to_owned(), (1, 4, 4, 64)), ("C".to_owned(), (2, 4, 8, 1))];
        // A: the key grew (stale); B: the same (reused); C: not pinned yet.
        let found = |n: &str| ["A", "B"].contains(&n).then_some((1, 4, 4, 64));
        assert_eq!(stale(&want, found), vec![("A", (1, 4, 4, 64), (1, 8, 4, 64))]);
    }

    #[test]
    fn the_object_pins_its_enforcement_maps() {
        let maps = expected(crate::ebpf_loader::object()).unwrap();
        let names: Vec<&str> = maps.iter().map(|(n, _)| n.as_str()).collect();
        for m in ["MANAGED_BONDS", "VERDICT_BY_IFINDEX", "VERDICT_BY_NAME", "MANAGED_BY_NAME"] {
            assert!(names.contains(&m), "{m} not pinned: {names:?}");
        }
        let key = |n: &str| maps.iter().find(|(m, _)| m == n).unwrap().1 .1;
        assert_eq!(key("MANAGED_BONDS"), 8, "DevKey (netns, ifindex)");
    }
}
