//! Where an ExaNIC (Cisco Nexus SmartNIC) port sits, for the legacy word: the `N` of `exanicN` (the card's
//! id) and the port number on that card.
//!
//! The identity comes from the exanic driver itself, the way exanic-software's user library finds it: first
//! `ETHTOOL_GDRVINFO` must name the driver `exanic` (so that no other driver's private ioctl is ever sent a
//! buffer it does not expect), then the socket ioctl `EXAIOCGIFINFO` (`SIOCDEVPRIVATE + 0`, `ifr_data` →
//! a 32-byte answer: `char dev_name[16]` = `"exanicN"`, NUL-terminated; `u16 port_num` in host order;
//! 14 reserved bytes) gives the card's device name and the port. The netdev's `dev_port`
//! (`/sys/class/net/<if>/dev_port`), which the driver sets to the same port, is read only as a
//! cross-check.
//!
//! [`decode_ifinfo`] is the pure part (the answer's bytes → `(id, port)`); [`location`] does the ioctls.
//! The legacy word has 8 bits for each, so an id or port above 255 is an error, not a truncation. Members
//! of other (lab) drivers have no location: the page then uses id 255 and the member's slot (see
//! `page_state::legacy_location`).

use std::path::Path;

/// `EXAIOCGIFINFO`: `SIOCDEVPRIVATE` (0x89F0, `linux/sockios.h`) + 0, the exanic driver's socket ioctl that
/// answers the card's device name and the port number of one of its netdevs.
pub const EXAIOCGIFINFO: libc::c_ulong = 0x89F0;

/// Size of the `EXAIOCGIFINFO` answer (`struct exaioc_ifinfo` in exanic-software): 16 + 2 + 14 bytes.
pub const IFINFO_LEN: usize = 32;

/// Size of the answer's `dev_name` field, NUL included.
pub const DEV_NAME_LEN: usize = 16;

/// Offset of the answer's `port_num` (a `u16` in host byte order).
const PORT_OFFSET: usize = DEV_NAME_LEN;

/// Prefix of the card's device name (`/dev/exanicN`).
const DEV_PREFIX: &str = "exanic";

/// Why a port's SmartNIC location cannot be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExanicIdError {
    /// The interface name is not a valid Linux interface name.
    #[error("{0:?} is not a valid interface name")]
    BadInterfaceName(String),
    /// `ETHTOOL_GDRVINFO` failed: no such interface, or its driver does not answer it.
    #[error("{0}: no driver information (ETHTOOL_GDRVINFO failed)")]
    NoDriverInfo(String),
    /// The interface is driven by another driver: not an ExaNIC port.
    #[error("{ifname}: driver {driver:?} is not exanic")]
    NotExanic {
        /// The interface.
        ifname: String,
        /// Its driver as `ETHTOOL_GDRVINFO` names it.
        driver: String,
    },
    /// The `EXAIOCGIFINFO` ioctl failed (`errno`).
    #[error("{ifname}: EXAIOCGIFINFO failed: {}", std::io::Error::from_raw_os_error(*errno))]
    Ioctl {
        /// The interface.
        ifname: String,
        /// The ioctl's errno.
        errno: i32,
    },
    /// The answer's `dev_name` has no NUL within its 16 bytes.
    #[error("EXAIOCGIFINFO answer: dev_name is not NUL-terminated within {DEV_NAME_LEN} bytes")]
    NameNotTerminated,
    /// The answer's `dev_name` is empty.
    #[error("EXAIOCGIFINFO answer: dev_name is empty")]
    EmptyName,
    /// The answer's `dev_name` does not start with `exanic` (shown escaped).
    #[error("EXAIOCGIFINFO answer: dev_name {0:?} does not start with \"exanic\"")]
    NotExanicName(String),
    /// `exanic` is not followed by a decimal card number without leading zeros (shown escaped).
    #[error("EXAIOCGIFINFO answer: dev_name {0:?} is not \"exanic\" and a card number")]
    BadCardNumber(String),
    /// The card number does not fit the legacy word's 8-bit id.
    #[error("EXAIOCGIFINFO answer: card number {0} is above 255")]
    IdOutOfRange(u64),
    /// The port number does not fit the legacy word's 8-bit port.
    #[error("EXAIOCGIFINFO answer: port {0} is above 255")]
    PortOutOfRange(u16),
    /// The ioctl's port differs from the netdev's `dev_port`. The ioctl's answer (`id`, `port`) is the one
    /// exanic-software uses: see [`ExanicIdError::location`].
    #[error("exanic{id} port {port} (EXAIOCGIFINFO) but dev_port is {dev_port}")]
    DevPortMismatch {
        /// Card id from the ioctl.
        id: u8,
        /// Port from the ioctl.
        port: u8,
        /// `/sys/class/net/<if>/dev_port`.
        dev_port: u32,
    },
}

impl ExanicIdError {
    /// The location the driver answered despite the error: `Some` only for
    /// [`ExanicIdError::DevPortMismatch`] (log it, then use the ioctl's answer, as exanic-software would).
    #[must_use]
    pub fn location(&self) -> Option<(u8, u8)> {
        match *self {
            Self::DevPortMismatch { id, port, .. } => Some((id, port)),
            _ => None,
        }
    }
}

/// Decode an `EXAIOCGIFINFO` answer into `(card id, port)`.
///
/// # Errors
/// One [`ExanicIdError`] decoding variant per defect: no NUL in `dev_name`, empty name, not `exanic…`, not
/// a decimal card number, id or port above 255.
pub fn decode_ifinfo(buf: &[u8; IFINFO_LEN]) -> Result<(u8, u8), ExanicIdError> {
    let field = &buf[..DEV_NAME_LEN];
    let len = field.iter().position(|&b| b == 0).ok_or(ExanicIdError::NameNotTerminated)?;
    let name = &field[..len];
    if name.is_empty() {
        return Err(ExanicIdError::EmptyName);
    }
    let shown = || name.escape_ascii().to_string();
    let digits = name.strip_prefix(DEV_PREFIX.as_bytes()).ok_or_else(|| ExanicIdError::NotExanicName(shown()))?;
    // The driver prints the id with "%u": decimal, no sign, no leading zero.
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || (digits.len() > 1 && digits[0] == b'0') {
        return Err(ExanicIdError::BadCardNumber(shown()));
    }
    // At most 9 digits fit the 16-byte field: no overflow.
    let id = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    let id = u8::try_from(id).map_err(|_| ExanicIdError::IdOutOfRange(id))?;
    let port = u16::from_ne_bytes([buf[PORT_OFFSET], buf[PORT_OFFSET + 1]]);
    let port = u8::try_from(port).map_err(|_| ExanicIdError::PortOutOfRange(port))?;
    Ok((id, port))
}

/// The SmartNIC location `(card id, port)` of netdev `ifname`, from the exanic driver
/// (`ETHTOOL_GDRVINFO` then `EXAIOCGIFINFO`), cross-checked with `/sys/class/net/<ifname>/dev_port`.
///
/// # Errors
/// [`ExanicIdError`]: bad name, not an ExaNIC port, ioctl failure, an answer that does not decode, or a
/// `dev_port` that differs from the ioctl's port ([`ExanicIdError::DevPortMismatch`], which still carries
/// the location).
pub fn location(ifname: &str) -> Result<(u8, u8), ExanicIdError> {
    location_in(Path::new("/sys"), ifname)
}

/// [`location`] with the `dev_port` cross-check read under the sysfs root `sysfs`.
fn location_in(sysfs: &Path, ifname: &str) -> Result<(u8, u8), ExanicIdError> {
    crate::ifname::validate(ifname).map_err(|_| ExanicIdError::BadInterfaceName(ifname.escape_debug().to_string()))?;
    match crate::sysinfo::driver_of(ifname) {
        None => return Err(ExanicIdError::NoDriverInfo(ifname.to_owned())),
        Some(d) if d != "exanic" => return Err(ExanicIdError::NotExanic { ifname: ifname.to_owned(), driver: d }),
        Some(_) => {}
    }
    let loc = decode_ifinfo(&ifinfo_ioctl(ifname)?)?;
    cross_check_dev_port(sysfs, ifname, loc)
}

/// The raw `EXAIOCGIFINFO` answer for `ifname` (a valid interface name driven by `exanic`).
fn ifinfo_ioctl(ifname: &str) -> Result<[u8; IFINFO_LEN], ExanicIdError> {
    let err = |errno: i32| ExanicIdError::Ioctl { ifname: ifname.to_owned(), errno };
    let last = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO);
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(err(last()));
    }
    let mut answer = [0u8; IFINFO_LEN];
    // SAFETY: all-zero is a valid ifreq (a byte array and a union of integers and pointers).
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(ifname.as_bytes()) {
        *d = libc::c_char::from_ne_bytes([*s]); // the name is checked: at most 15 bytes, so the NUL stays
    }
    req.ifr_ifru.ifru_data = answer.as_mut_ptr().cast();
    // SAFETY: `req` is a valid ifreq whose data points at IFINFO_LEN writable bytes, the size the exanic
    // driver copies out; both live for the call. The driver was checked to be exanic first.
    let rc = unsafe { libc::ioctl(fd, EXAIOCGIFINFO, &raw mut req) };
    let errno = if rc < 0 { last() } else { 0 };
    // SAFETY: closing the fd we opened.
    unsafe { libc::close(fd) };
    if rc < 0 {
        return Err(err(errno));
    }
    Ok(answer)
}

/// `loc` if `<sysfs>/class/net/<ifname>/dev_port` agrees with its port or cannot be read.
fn cross_check_dev_port(sysfs: &Path, ifname: &str, loc: (u8, u8)) -> Result<(u8, u8), ExanicIdError> {
    let path = sysfs.join("class/net").join(ifname).join("dev_port");
    let dev_port = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse::<u32>().ok());
    match dev_port {
        Some(d) if d != u32::from(loc.1) => Err(ExanicIdError::DevPortMismatch { id: loc.0, port: loc.1, dev_port: d }),
        _ => Ok(loc),
    }
}

/// The (SmartNIC id, port) the page publishes for member `ifname`: [`location`], with every failure but
/// "not an ExaNIC port" logged loudly, since readers then cannot find the port: the page falls back to
/// id 255 and the member's slot (`page_state::legacy_location`), as for lab drivers. A `dev_port` that
/// disagrees with the ioctl is logged and the ioctl's answer used (it is what exanic-software reads).
#[must_use]
pub fn page_location(ifname: &str) -> Option<(u8, u8)> {
    match location(ifname) {
        Ok(loc) => Some(loc),
        Err(e @ ExanicIdError::DevPortMismatch { .. }) => {
            tracing::warn!(member = %ifname, "{e}");
            e.location()
        }
        Err(ExanicIdError::NotExanic { .. } | ExanicIdError::NoDriverInfo(_)) => None,
        Err(e) => {
            tracing::error!(
                member = %ifname,
                "AN EXANIC PORT DID NOT SAY WHERE IT IS ({e}): its page word gets id 255 and its slot, which \
                 libexasock cannot match to an exanicN port"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An answer as the driver writes it: `name` then NULs, `port` in host order.
    fn answer(name: &[u8], port: u16) -> [u8; IFINFO_LEN] {
        let mut b = [0u8; IFINFO_LEN];
        b[..name.len()].copy_from_slice(name);
        b[PORT_OFFSET..PORT_OFFSET + 2].copy_from_slice(&port.to_ne_bytes());
        b
    }

    #[test]
    fn decodes_good_answers() {
        assert_eq!(decode_ifinfo(&answer(b"exanic0", 1)), Ok((0, 1)));
        assert_eq!(decode_ifinfo(&answer(b"exanic1", 0)), Ok((1, 0)));
        assert_eq!(decode_ifinfo(&answer(b"exanic255", 255)), Ok((255, 255)), "the 8-bit limits");
        // Reserved bytes are ignored.
        let mut b = answer(b"exanic3", 7);
        b[IFINFO_LEN - 1] = 0xff;
        assert_eq!(decode_ifinfo(&b), Ok((3, 7)));
        // Bytes after the NUL are ignored.
        let mut b = answer(b"exanic4", 2);
        b[10] = b'x';
        assert_eq!(decode_ifinfo(&b), Ok((4, 2)));
    }

    #[test]
    fn rejects_a_name_without_nul() {
        let b = answer(b"exanic0123456789", 0); // fills all 16 bytes
        assert_eq!(decode_ifinfo(&b), Err(ExanicIdError::NameNotTerminated));
    }

    #[test]
    fn rejects_an_empty_name() {
        assert_eq!(decode_ifinfo(&answer(b"", 0)), Err(ExanicIdError::EmptyName));
        assert_eq!(decode_ifinfo(&[0; IFINFO_LEN]), Err(ExanicIdError::EmptyName));
    }

    #[test]
    fn rejects_other_prefixes() {
        assert_eq!(decode_ifinfo(&answer(b"eth0", 0)), Err(ExanicIdError::NotExanicName("eth0".into())));
        assert_eq!(decode_ifinfo(&answer(b"EXANIC0", 0)), Err(ExanicIdError::NotExanicName("EXANIC0".into())));
        assert_eq!(decode_ifinfo(&answer(b"exa\xff0", 0)), Err(ExanicIdError::NotExanicName("exa\\xff0".into())));
    }

    #[test]
    fn rejects_bad_card_numbers() {
        for name in [&b"exanic"[..], b"exanic-1", b"exanic+1", b"exanic1a", b"exanic 1", b"exanic01", b"exanic00"] {
            assert_eq!(
                decode_ifinfo(&answer(name, 0)),
                Err(ExanicIdError::BadCardNumber(name.escape_ascii().to_string())),
                "{}",
                name.escape_ascii()
            );
        }
    }

    #[test]
    fn rejects_ids_above_255() {
        assert_eq!(decode_ifinfo(&answer(b"exanic256", 0)), Err(ExanicIdError::IdOutOfRange(256)));
        assert_eq!(decode_ifinfo(&answer(b"exanic999999999", 0)), Err(ExanicIdError::IdOutOfRange(999_999_999)));
    }

    #[test]
    fn rejects_ports_above_255() {
        assert_eq!(decode_ifinfo(&answer(b"exanic0", 256)), Err(ExanicIdError::PortOutOfRange(256)));
        assert_eq!(decode_ifinfo(&answer(b"exanic0", u16::MAX)), Err(ExanicIdError::PortOutOfRange(u16::MAX)));
    }

    #[test]
    fn dev_port_cross_check() {
        let root = std::env::temp_dir().join(format!("exabond-exanic-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let net = root.join("class/net/exa0p1");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::write(net.join("dev_port"), "1\n").unwrap();
        assert_eq!(cross_check_dev_port(&root, "exa0p1", (0, 1)), Ok((0, 1)));
        std::fs::write(net.join("dev_port"), "3\n").unwrap();
        let e = cross_check_dev_port(&root, "exa0p1", (0, 1)).unwrap_err();
        assert_eq!(e, ExanicIdError::DevPortMismatch { id: 0, port: 1, dev_port: 3 });
        assert_eq!(e.location(), Some((0, 1)));
        assert_eq!(cross_check_dev_port(&root, "missing", (2, 0)), Ok((2, 0)), "unreadable: no cross-check");
        std::fs::write(net.join("dev_port"), "x").unwrap();
        assert_eq!(cross_check_dev_port(&root, "exa0p1", (0, 1)), Ok((0, 1)), "unparsable: no cross-check");
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(ExanicIdError::PortOutOfRange(300).location(), None);
    }

    #[test]
    fn non_exanic_interfaces() {
        assert!(matches!(location(""), Err(ExanicIdError::BadInterfaceName(_))));
        assert!(matches!(location("../etc"), Err(ExanicIdError::BadInterfaceName(_))));
        assert!(matches!(location("a-name-longer-than-15"), Err(ExanicIdError::BadInterfaceName(_))));
        assert_eq!(location("no-such-dev0"), Err(ExanicIdError::NoDriverInfo("no-such-dev0".into())));
        // `lo` answers ETHTOOL_GDRVINFO on some kernels and not on others; never as exanic.
        assert!(matches!(location("lo"), Err(ExanicIdError::NotExanic { .. } | ExanicIdError::NoDriverInfo(_))));
        assert_eq!(page_location("no-such-dev0"), None);
        assert_eq!(std::mem::size_of::<libc::ifreq>(), 40);
    }
}
