//! Every exit code of `exabond` in one place: the CLI's (`exabond manage/unmanage/member/list/status/watch`),
//! the control socket's (`err <code> <message>`) and each refusal's (`ManageError`, `MemberError`,
//! `ControlError`). Documented for users in `exabond --help` (`cli::EXIT_CODES`) and the README.

use std::fmt;

/// A non-zero exit code (0 is success, `std::process::ExitCode::SUCCESS`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Exit {
    /// Internal failure (netlink, page creation, enforcement maps, a broken connection to the agent).
    Internal = 1,
    /// Malformed request or command line (also clap's own code for a bad command line).
    Usage = 2,
    /// Not a valid interface name.
    InvalidName = 3,
    /// No interface of that name (or, for `exabond member`, none the agent knows yet).
    NoSuchInterface = 4,
    /// Not a bond.
    NotABond = 5,
    /// The bond is not in active-backup mode.
    NotActiveBackup = 6,
    /// A member (or the device asked about) is not a `SmartNIC` port.
    NotSmartNic = 7,
    /// A member (or the device asked about) is a bond (nesting).
    MemberIsBond = 8,
    /// A member (or the device asked about) is a VLAN device.
    MemberIsVlan = 9,
    /// The caller is not root.
    PermissionDenied = 10,
    /// No agent is listening on the control socket.
    NoAgent = 11,
}

impl Exit {
    /// Every code, in numeric order.
    pub const ALL: [Self; 11] = [
        Self::Internal,
        Self::Usage,
        Self::InvalidName,
        Self::NoSuchInterface,
        Self::NotABond,
        Self::NotActiveBackup,
        Self::NotSmartNic,
        Self::MemberIsBond,
        Self::MemberIsVlan,
        Self::PermissionDenied,
        Self::NoAgent,
    ];

    /// The number (the process's exit status, and the `<code>` of an `err` reply).
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// The number, as the control socket's `err <code>` writes it.
impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.code().fmt(f)
    }
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        Self::from(e.code())
    }
}

/// Codes travel as numbers (replies of the control socket): compare them as such.
impl PartialEq<u8> for Exit {
    fn eq(&self, other: &u8) -> bool {
        self.code() == *other
    }
}

impl PartialEq<Exit> for u8 {
    fn eq(&self, other: &Exit) -> bool {
        *self == other.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_numbers_never_change() {
        let numbers: Vec<u8> = Exit::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(numbers, (1..=11).collect::<Vec<u8>>(), "documented in exabond --help and the README");
        assert_eq!(Exit::PermissionDenied, 10);
        assert_eq!(11, Exit::NoAgent);
        assert_eq!(format!("err {} x", Exit::MemberIsVlan), "err 9 x");
    }
}
