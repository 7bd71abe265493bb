//! Where an ExaNIC (Cisco Nexus SmartNIC) port sits, for the legacy word: the `N` of `exanicN` and the
//! port number, read from sysfs.
//!
//! The exanic driver binds the PCI device (`/sys/class/net/<if>/device/driver` → `exanic`) and registers
//! the card's character device `exanicN` as a child of it (`/sys/class/net/<if>/device/exanic/exanicN`);
//! each port's netdev carries its port number in `dev_port`. Members of other (lab) drivers have no such
//! location: the page then uses id 255 and the member's slot (see `page_state::legacy_location`).

use std::path::Path;

/// The (SmartNIC id, port) of netdev `ifname` under the sysfs root `sysfs` (normally `/sys`), or `None`
/// if it is not an ExaNIC port.
#[must_use]
pub fn smartnic_location(sysfs: &Path, ifname: &str) -> Option<(u8, u8)> {
    let net = sysfs.join("class/net").join(ifname);
    let driver = std::fs::read_link(net.join("device/driver")).ok()?;
    if driver.file_name()? != "exanic" {
        return None;
    }
    let id = std::fs::read_dir(net.join("device/exanic"))
        .ok()?
        .filter_map(Result::ok)
        .find_map(|e| e.file_name().to_str()?.strip_prefix("exanic")?.parse::<u8>().ok())?;
    let port = std::fs::read_to_string(net.join("dev_port")).ok()?.trim().parse::<u8>().ok()?;
    Some((id, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs tree: two ports of exanic3, a veth, and a NIC of another driver.
    fn tree() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("exabond-sysfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pci = root.join("devices/pci0000:00/0000:01:00.0");
        std::fs::create_dir_all(pci.join("exanic/exanic3")).unwrap();
        std::fs::create_dir_all(root.join("bus/pci/drivers/exanic")).unwrap();
        std::fs::create_dir_all(root.join("bus/pci/drivers/ixgbe")).unwrap();
        symlink(root.join("bus/pci/drivers/exanic"), pci.join("driver")).unwrap();
        let other = root.join("devices/pci0000:00/0000:02:00.0");
        std::fs::create_dir_all(&other).unwrap();
        symlink(root.join("bus/pci/drivers/ixgbe"), other.join("driver")).unwrap();
        for (ifname, port, dev) in [("enp1s0", "0", &pci), ("enp1s0d1", "1", &pci), ("eth9", "0", &other)] {
            let net = root.join("class/net").join(ifname);
            std::fs::create_dir_all(&net).unwrap();
            symlink(dev, net.join("device")).unwrap();
            std::fs::write(net.join("dev_port"), format!("{port}\n")).unwrap();
        }
        std::fs::create_dir_all(root.join("class/net/veth0")).unwrap(); // no device link
        root
    }

    #[test]
    fn exanic_ports_and_others() {
        let root = tree();
        assert_eq!(smartnic_location(&root, "enp1s0"), Some((3, 0)));
        assert_eq!(smartnic_location(&root, "enp1s0d1"), Some((3, 1)));
        assert_eq!(smartnic_location(&root, "eth9"), None, "another driver");
        assert_eq!(smartnic_location(&root, "veth0"), None, "no device");
        assert_eq!(smartnic_location(&root, "missing"), None);
        std::fs::write(root.join("class/net/enp1s0/dev_port"), "x").unwrap();
        assert_eq!(smartnic_location(&root, "enp1s0"), None, "unreadable port");
    }
}
