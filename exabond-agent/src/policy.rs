//! What may be managed and what may join a managed bond: pure functions, unit-tested without a kernel.
//! The eBPF side only enforces the verdicts this module computes (see `enforcement.rs`).

use netlink_packet_route::link::BondMode;

use crate::bond_view::BondView;
use crate::exit_code::Exit;
use crate::ifname::{self, NameError};

/// The driver of `SmartNIC` (`ExaNIC`) ports; always allowed.
pub const SMARTNIC_DRIVER: &str = "exanic";

/// What the policy needs to know about a network device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Interface name.
    pub name: String,
    /// rtnetlink link kind (`bond`, `vlan`, `veth`, ...; empty for hardware NICs).
    pub kind: String,
    /// Driver name as `ETHTOOL_GDRVINFO` reports it (`exanic`, `veth`, `bonding`, `802.1Q VLAN Support`),
    /// `None` if it could not be read.
    pub driver: Option<String>,
}

/// May a device join a managed bond?
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Yes: its driver is `exanic` or one of the `--member-driver`s.
    Allowed,
    /// No: its driver is not a `SmartNIC` driver.
    NotSmartNic {
        /// The driver found (or `unknown`).
        driver: String,
    },
    /// No: it is a bond itself (nesting).
    IsBond,
    /// No: it is a VLAN device.
    IsVlan,
}

impl Verdict {
    /// The errno the kernel-side veto returns (0 = allowed): the original module's codes.
    #[must_use]
    pub const fn errno(&self) -> u32 {
        use exabond_common::policy_maps::{EINVAL, ENODEV, VERDICT_ALLOWED};
        match self {
            Self::Allowed => VERDICT_ALLOWED,
            Self::NotSmartNic { .. } | Self::IsVlan => ENODEV,
            Self::IsBond => EINVAL,
        }
    }
}

/// The member policy: which drivers count as `SmartNIC` ports.
#[derive(Clone, Debug)]
pub struct MemberPolicy {
    drivers: Vec<String>,
}

impl MemberPolicy {
    /// `exanic` plus `extra` (from `--member-driver`).
    #[must_use]
    pub fn new(extra: &[String]) -> Self {
        let mut drivers = vec![SMARTNIC_DRIVER.to_owned()];
        drivers.extend(extra.iter().filter(|d| d.as_str() != SMARTNIC_DRIVER).cloned());
        Self { drivers }
    }

    /// The allowed drivers.
    #[must_use]
    pub fn drivers(&self) -> &[String] {
        &self.drivers
    }

    /// The verdict for one device. Bond and VLAN are checked first: they are refused whatever their driver.
    #[must_use]
    pub fn verdict(&self, d: &DeviceInfo) -> Verdict {
        let driver = d.driver.as_deref().unwrap_or("");
        if d.kind == "bond" || driver == "bonding" {
            return Verdict::IsBond;
        }
        if d.kind == "vlan" || driver == "802.1Q VLAN Support" {
            return Verdict::IsVlan;
        }
        if self.drivers.iter().any(|a| a == driver) {
            Verdict::Allowed
        } else {
            Verdict::NotSmartNic { driver: d.driver.clone().unwrap_or_else(|| "unknown".into()) }
        }
    }
}

/// Why a bond cannot be placed under management (each with its own CLI exit code).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManageError {
    /// Not a valid interface name.
    #[error("invalid bond name: {0}")]
    InvalidName(#[from] NameError),
    /// No interface of that name.
    #[error("no such interface: {0} (create it: echo +{0} > /sys/class/net/bonding_masters)")]
    NoSuchInterface(String),
    /// Not a bonding master.
    #[error("{0} is not a bond (bonding driver master)")]
    NotABond(String),
    /// Mode other than active-backup.
    #[error("bond {bond} is in mode {mode}, only active-backup is supported (with no members: echo active-backup > /sys/class/net/{bond}/bonding/mode)")]
    NotActiveBackup {
        /// The bond.
        bond: String,
        /// Its mode.
        mode: String,
    },
    /// A member is not a `SmartNIC` port.
    #[error("bond {bond}: member {member} (driver {driver}) is not a SmartNIC port; release it (echo -{member} > /sys/class/net/{bond}/bonding/slaves) or allow its driver with --member-driver {driver}")]
    MemberNotSmartNic {
        /// The bond.
        bond: String,
        /// The member.
        member: String,
        /// Its driver.
        driver: String,
    },
    /// A member is a bond.
    #[error("bond {bond}: member {member} is itself a bond; nested bonds are not supported (release it: echo -{member} > /sys/class/net/{bond}/bonding/slaves)")]
    MemberIsBond {
        /// The bond.
        bond: String,
        /// The member.
        member: String,
    },
    /// A member is a VLAN device.
    #[error("bond {bond}: member {member} is a VLAN device; members must be SmartNIC ports (release it: echo -{member} > /sys/class/net/{bond}/bonding/slaves)")]
    MemberIsVlan {
        /// The bond.
        bond: String,
        /// The member.
        member: String,
    },
}

impl ManageError {
    /// The distinct exit code of `exabond manage` for this refusal (documented in `exabond --help`).
    #[must_use]
    pub const fn exit_code(&self) -> Exit {
        match self {
            Self::InvalidName(_) => Exit::InvalidName,
            Self::NoSuchInterface(_) => Exit::NoSuchInterface,
            Self::NotABond(_) => Exit::NotABond,
            Self::NotActiveBackup { .. } => Exit::NotActiveBackup,
            Self::MemberNotSmartNic { .. } => Exit::NotSmartNic,
            Self::MemberIsBond { .. } => Exit::MemberIsBond,
            Self::MemberIsVlan { .. } => Exit::MemberIsVlan,
        }
    }
}

/// Why a device may not join a managed bond (`exabond member DEV`), with the manage-time exit codes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemberError {
    /// Not a valid interface name.
    #[error(transparent)]
    InvalidName(#[from] crate::ifname::NameError),
    /// No device of that name in the agent's view.
    #[error("{0}: no such interface known to the agent (absent, or created an instant ago: the agent judges a new device within milliseconds of its rtnetlink notification, and until then the kernel-side veto refuses it with ENODEV)")]
    Unknown(String),
    /// Not a `SmartNIC` port.
    #[error("{member}: refused, driver {driver} is not a SmartNIC driver (allow it with --member-driver {driver})")]
    NotSmartNic {
        /// The device.
        member: String,
        /// Its driver.
        driver: String,
    },
    /// A bond.
    #[error("{0}: refused, it is a bond (nested bonds are not supported)")]
    IsBond(String),
    /// A VLAN device.
    #[error("{0}: refused, it is a VLAN device (members must be SmartNIC ports)")]
    IsVlan(String),
}

impl MemberError {
    /// The exit code of `exabond member` (the same as `exabond manage` for the same reason).
    #[must_use]
    pub const fn exit_code(&self) -> Exit {
        match self {
            Self::InvalidName(_) => Exit::InvalidName,
            Self::Unknown(_) => Exit::NoSuchInterface,
            Self::NotSmartNic { .. } => Exit::NotSmartNic,
            Self::IsBond(_) => Exit::MemberIsBond,
            Self::IsVlan(_) => Exit::MemberIsVlan,
        }
    }
}

/// May device `name` join a managed bond, given the agent's verdict for it (`None`: no device of that name
/// in its view)?
///
/// # Errors
/// [`MemberError`] saying why not.
pub fn member_answer(name: &str, verdict: Option<&Verdict>) -> Result<String, MemberError> {
    crate::ifname::validate(name)?;
    match verdict {
        None => Err(MemberError::Unknown(name.to_owned())),
        Some(Verdict::Allowed) => Ok(format!("{name}: allowed as a member of managed bonds")),
        Some(Verdict::NotSmartNic { driver }) => {
            Err(MemberError::NotSmartNic { member: name.to_owned(), driver: driver.clone() })
        }
        Some(Verdict::IsBond) => Err(MemberError::IsBond(name.to_owned())),
        Some(Verdict::IsVlan) => Err(MemberError::IsVlan(name.to_owned())),
    }
}

/// The manage-time checks, in the original's order: valid name, exists, is a bond, active-backup, every
/// existing member allowed (an empty bond is fine). `exists` tells whether any interface has that name,
/// `bond` is its bond view if it is a bond, `member` gives the device info of a member by name.
///
/// # Errors
/// The first failed check.
pub fn check_manage(
    name: &str,
    exists: bool,
    bond: Option<&BondView>,
    policy: &MemberPolicy,
    member: &dyn Fn(&str) -> DeviceInfo,
) -> Result<(), ManageError> {
    ifname::validate(name)?;
    if !exists {
        return Err(ManageError::NoSuchInterface(name.to_owned()));
    }
    let Some(bond) = bond else { return Err(ManageError::NotABond(name.to_owned())) };
    if bond.mode != BondMode::ActiveBackup {
        return Err(ManageError::NotActiveBackup { bond: name.to_owned(), mode: mode_name(bond.mode) });
    }
    for s in &bond.slaves {
        let info = member(&s.name);
        match policy.verdict(&info) {
            Verdict::Allowed => {}
            Verdict::NotSmartNic { driver } => {
                return Err(ManageError::MemberNotSmartNic { bond: name.to_owned(), member: s.name.clone(), driver })
            }
            Verdict::IsBond => return Err(ManageError::MemberIsBond { bond: name.to_owned(), member: s.name.clone() }),
            Verdict::IsVlan => return Err(ManageError::MemberIsVlan { bond: name.to_owned(), member: s.name.clone() }),
        }
    }
    Ok(())
}

/// The sysfs spelling of a bonding mode.
#[must_use]
pub fn mode_name(m: BondMode) -> String {
    match m {
        BondMode::BalanceRr => "balance-rr".into(),
        BondMode::ActiveBackup => "active-backup".into(),
        BondMode::BalanceXor => "balance-xor".into(),
        BondMode::Broadcast => "broadcast".into(),
        BondMode::Ieee8023Ad => "802.3ad".into(),
        BondMode::BalanceTlb => "balance-tlb".into(),
        BondMode::BalanceAlb => "balance-alb".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bond_view::SlaveView;
    use exabond_common::page::LinkState;

    fn dev(name: &str, kind: &str, driver: Option<&str>) -> DeviceInfo {
        DeviceInfo { name: name.into(), kind: kind.into(), driver: driver.map(Into::into) }
    }

    #[test]
    fn verdicts() {
        let strict = MemberPolicy::new(&[]);
        let lab = MemberPolicy::new(&["veth".into(), "exanic".into()]);
        assert_eq!(lab.drivers(), ["exanic", "veth"]);
        assert_eq!(strict.verdict(&dev("exanic0", "", Some("exanic"))), Verdict::Allowed);
        assert_eq!(strict.verdict(&dev("v0", "veth", Some("veth"))), Verdict::NotSmartNic { driver: "veth".into() });
        assert_eq!(lab.verdict(&dev("v0", "veth", Some("veth"))), Verdict::Allowed);
        assert_eq!(lab.verdict(&dev("b1", "bond", Some("bonding"))), Verdict::IsBond);
        assert_eq!(lab.verdict(&dev("v0.10", "vlan", Some("802.1Q VLAN Support"))), Verdict::IsVlan);
        // A VLAN on top of an exanic port is still a VLAN.
        assert_eq!(strict.verdict(&dev("exanic0.5", "vlan", Some("exanic"))), Verdict::IsVlan);
        assert_eq!(strict.verdict(&dev("x", "", None)), Verdict::NotSmartNic { driver: "unknown".into() });
        assert_eq!(Verdict::IsBond.errno(), 22);
        assert_eq!(Verdict::IsVlan.errno(), 19);
        assert_eq!(Verdict::NotSmartNic { driver: String::new() }.errno(), 19);
        assert_eq!(Verdict::Allowed.errno(), 0);
    }

    fn bond(mode: BondMode, members: &[&str]) -> BondView {
        BondView {
            ifindex: 1,
            name: "bond0".into(),
            mode,
            active_ifindex: 0,
            miimon_ms: 10,
            arp_interval_ms: 0,
            arp_targets: 0,
            up: true,
            slaves: members
                .iter()
                .enumerate()
                .map(|(i, n)| SlaveView {
                    ifindex: 10 + u32::try_from(i).unwrap(),
                    name: (*n).into(),
                    mac: [0; 6],
                    link: LinkState::Up,
                    active: false,
                    link_failures: 0,
                    kind: String::new(),
                })
                .collect(),
        }
    }

    fn lookup(name: &str) -> DeviceInfo {
        match name {
            n if n.contains('.') => dev(n, "vlan", Some("802.1Q VLAN Support")),
            n if n.starts_with("exanic") => dev(n, "", Some("exanic")),
            n if n.starts_with("bond") => dev(n, "bond", Some("bonding")),
            n => dev(n, "veth", Some("veth")),
        }
    }

    #[test]
    fn manage_checks_in_order() {
        let p = MemberPolicy::new(&[]);
        let ok = bond(BondMode::ActiveBackup, &["exanic0", "exanic1"]);
        assert_eq!(check_manage("bond0", true, Some(&ok), &p, &lookup), Ok(()));
        assert_eq!(
            check_manage("bond0", true, Some(&bond(BondMode::ActiveBackup, &[])), &p, &lookup),
            Ok(()),
            "empty bond allowed"
        );
        let e = check_manage("../x", true, Some(&ok), &p, &lookup).unwrap_err();
        assert_eq!(e.exit_code(), 3);
        assert_eq!(check_manage("bond9", false, None, &p, &lookup).unwrap_err().exit_code(), 4);
        assert_eq!(check_manage("eth0", true, None, &p, &lookup).unwrap_err().exit_code(), 5);
        let rr = check_manage("bond0", true, Some(&bond(BondMode::BalanceRr, &["veth0"])), &p, &lookup).unwrap_err();
        assert_eq!(rr.exit_code(), 6, "mode is checked before members");
        assert!(rr.to_string().contains("balance-rr"), "{rr}");
        let nic = check_manage("bond0", true, Some(&bond(BondMode::ActiveBackup, &["exanic0", "veth0"])), &p, &lookup)
            .unwrap_err();
        assert_eq!(nic.exit_code(), 7);
        let msg = nic.to_string();
        assert!(msg.contains("veth0") && msg.contains("driver veth") && msg.contains("--member-driver veth"), "{msg}");
        assert_eq!(
            check_manage("bond0", true, Some(&bond(BondMode::ActiveBackup, &["bond1"])), &p, &lookup)
                .unwrap_err()
                .exit_code(),
            8
        );
        assert_eq!(
            check_manage("bond0", true, Some(&bond(BondMode::ActiveBackup, &["exanic0.5"])), &p, &lookup)
                .unwrap_err()
                .exit_code(),
            9
        );
        let lab = MemberPolicy::new(&["veth".into()]);
        assert_eq!(check_manage("bond0", true, Some(&bond(BondMode::ActiveBackup, &["veth0"])), &lab, &lookup), Ok(()));
    }

    #[test]
    fn member_answers_and_exit_codes() {
        assert!(member_answer("eth2", Some(&Verdict::Allowed)).unwrap().contains("allowed"));
        let e = member_answer("v0", Some(&Verdict::NotSmartNic { driver: "veth".into() })).unwrap_err();
        assert_eq!(e.exit_code(), 7);
        assert!(e.to_string().contains("--member-driver veth"), "{e}");
        assert_eq!(member_answer("b1", Some(&Verdict::IsBond)).unwrap_err().exit_code(), 8);
        assert_eq!(member_answer("e.10", Some(&Verdict::IsVlan)).unwrap_err().exit_code(), 9);
        let e = member_answer("new0", None).unwrap_err();
        assert_eq!(e.exit_code(), 4);
        assert!(e.to_string().contains("created an instant ago"), "{e}");
        assert_eq!(member_answer("a/b", None).unwrap_err().exit_code(), 3);
        assert_eq!(member_answer("", Some(&Verdict::Allowed)).unwrap_err().exit_code(), 3);
    }
}
