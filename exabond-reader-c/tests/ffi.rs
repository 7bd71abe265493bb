//! The C ABI called from Rust: error codes, NULL arguments, snapshot contents, `exabond_changed`
//! semantics, staleness. (Integration tests: `missing_docs` does not apply.)

use std::ffi::{CStr, CString};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::ptr;

use exabond::exabond_error::{self, *};
use exabond::*;
use exabond_common::clock;
use exabond_common::page::{self, legacy, PageData, SlaveRecord, FLAG_ACTIVE, FLAG_RETIRED};
use exabond_common::writer::PageWriter;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("exabond-ffi-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// `exabond_open(bond, dir)`: the handle or the error code.
fn open(bond: &[u8], dir: Option<&Path>) -> Result<*mut exabond_reader, exabond_error> {
    let bond = CString::new(bond).unwrap();
    let dir = dir.map(cstring);
    let mut err = 12345;
    // SAFETY: NUL-terminated strings that outlive the call, a writable int.
    let r = unsafe { exabond_open(bond.as_ptr(), dir.as_ref().map_or(ptr::null(), |d| d.as_ptr()), &raw mut err) };
    if r.is_null() {
        assert_ne!(err, 0, "NULL handle with EXABOND_OK");
        Err(exabond_error::from_code(err).expect("a known code"))
    } else {
        assert_eq!(err, 0, "handle with an error code");
        Ok(r)
    }
}

fn open_path(path: &Path) -> Result<*mut exabond_reader, exabond_error> {
    let path = cstring(path);
    let mut err = 12345;
    // SAFETY: a NUL-terminated string that outlives the call, a writable int.
    let r = unsafe { exabond_open_path(path.as_ptr(), &raw mut err) };
    if r.is_null() {
        Err(exabond_error::from_code(err).expect("a known code"))
    } else {
        assert_eq!(err, 0);
        Ok(r)
    }
}

/// A closed-on-drop handle.
struct Handle(*mut exabond_reader);

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: a live handle, not used after this.
        unsafe { exabond_close(self.0) };
    }
}

impl Handle {
    fn changed(&mut self) -> i32 {
        // SAFETY: a live handle used by this thread only.
        unsafe { exabond_changed(self.0) }
    }

    fn word(&self) -> u32 {
        // SAFETY: a live handle.
        unsafe { exabond_legacy_word(self.0) }
    }

    fn snapshot(&self) -> Result<exabond_snapshot, exabond_error> {
        let mut out = std::mem::MaybeUninit::<exabond_snapshot>::uninit();
        // SAFETY: a live handle; `out` is writable memory for one snapshot.
        let rc = unsafe { exabond_snapshot(self.0, out.as_mut_ptr()) };
        if rc == 0 {
            // SAFETY: EXABOND_OK means `out` was written.
            Ok(unsafe { out.assume_init() })
        } else {
            Err(exabond_error::from_code(rc).expect("a known code"))
        }
    }

    fn is_stale(&self, max_age_ns: u64) -> i32 {
        // SAFETY: a live handle.
        unsafe { exabond_is_stale(self.0, max_age_ns) }
    }
}

/// A page with three slaves, `active` of them active (or none), `n` failovers.
fn state(n: u64, active: Option<usize>) -> PageData {
    let mut d = PageData::new("bond0", 10, 4242);
    d.slave_count = 3;
    for (s, i) in d.slaves.iter_mut().take(3).zip(0u8..) {
        *s = SlaveRecord {
            name: page::name_buf(&format!("eth{i}")),
            ifindex: 11 + u32::from(i),
            link: 1,
            link_failures: u32::from(i),
            mac: [2, 0, 0, 0, 0, i, 0, 0],
            smartnic_id: i / 2,
            port: i % 2,
            ..SlaveRecord::EMPTY
        };
    }
    d.failover_count = n;
    d.last_change_mono_ns = 1000 + n;
    d.last_change_real_ns = 2000 + n;
    d.kernel_event_ns = 900 + n;
    d.last_change_source = 1;
    d.heartbeat_mono_ns = clock::monotonic_ns();
    if let Some(a) = active {
        let s = d.slaves[a];
        d.slaves[a].role = 1;
        d.flags = FLAG_ACTIVE;
        d.active_slot = u32::try_from(a).unwrap();
        d.active_ifindex = s.ifindex;
        d.active_name = s.name;
        d.active_mac = s.mac;
        d.legacy_word = legacy::encode(true, s.smartnic_id, s.port);
    } else {
        d.legacy_word = legacy::encode(false, 0, 0);
    }
    d
}

/// The raw bytes of a plain-integer `repr(C)` value without padding.
fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: `v` is a live reference to size_of::<T>() bytes; used only for the padding-free layout
    // types of the page (all bytes initialised).
    unsafe { std::slice::from_raw_parts(ptr::from_ref(v).cast::<u8>(), size_of::<T>()) }.to_vec()
}

#[test]
fn invalid_bond_names_are_refused_before_any_path_is_built() {
    let dir = tmpdir("names");
    for bad in [
        &b""[..],
        b"a/b",
        b"../etc",
        b"/",
        b".",
        b"..",
        b"bond 0",
        b"bond\t0",
        b"bond\n",
        b"bond\x0b",
        b"bond:0",
        b"sixteen-chars-xx",
        b"\xff\xfe",
    ] {
        assert_eq!(open(bad, Some(&dir)), Err(EXABOND_ERR_INVALID_NAME), "{:?}", String::from_utf8_lossy(bad));
    }
    // Valid names (15 bytes, dots, dashes) just are not there.
    for good in [&b"fifteen-chars-x"[..], b"bond0", b"b.o-n_d", b"..."] {
        assert!(valid_bond_name(good));
        assert_eq!(open(good, Some(&dir)), Err(EXABOND_ERR_NOT_FOUND));
    }
}

#[test]
fn missing_pages_and_directories() {
    let dir = tmpdir("missing");
    assert_eq!(open(b"bond0", Some(&dir)), Err(EXABOND_ERR_NOT_FOUND));
    assert_eq!(open(b"bond0", Some(&dir.join("no-such-dir"))), Err(EXABOND_ERR_NOT_FOUND));
    // A "directory" that is a file.
    std::fs::write(dir.join("file"), b"x").unwrap();
    assert_eq!(open(b"bond0", Some(&dir.join("file"))), Err(EXABOND_ERR_NOT_FOUND));
    assert_eq!(open_path(&dir.join("exabond-none")), Err(EXABOND_ERR_NOT_FOUND));
    // NULL page_dir is /dev.
    assert_eq!(open(b"no-such-bond7", None), Err(EXABOND_ERR_NOT_FOUND), "/dev/exabond-no-such-bond7");
}

#[test]
fn files_that_are_not_pages() {
    let dir = tmpdir("notapage");
    std::fs::write(dir.join("exabond-short"), [0u8; 100]).unwrap();
    assert_eq!(open(b"short", Some(&dir)), Err(EXABOND_ERR_NOT_A_PAGE));
    // The original kernel module's page: only the legacy word.
    let mut old = vec![0u8; page::PAGE_SIZE];
    old[..4].copy_from_slice(&legacy::encode(true, 1, 0).to_ne_bytes());
    std::fs::write(dir.join("exabond-old"), &old).unwrap();
    assert_eq!(open(b"old", Some(&dir)), Err(EXABOND_ERR_NOT_A_PAGE));
    // A directory.
    std::fs::create_dir_all(dir.join("exabond-dir")).unwrap();
    assert_eq!(open(b"dir", Some(&dir)), Err(EXABOND_ERR_NOT_A_PAGE));
    // A page of a future layout.
    let mut future = vec![0u8; page::PAGE_SIZE];
    future[72..76].copy_from_slice(&page::PAGE_MAGIC.to_ne_bytes());
    future[76..80].copy_from_slice(&2u32.to_ne_bytes());
    std::fs::write(dir.join("exabond-new"), &future).unwrap();
    assert_eq!(open(b"new", Some(&dir)), Err(EXABOND_ERR_VERSION));
    assert_eq!(open_path(&dir.join("exabond-new")), Err(EXABOND_ERR_VERSION));
}

#[test]
fn io_error_kinds_map_to_codes() {
    // Permission errors cannot be produced for root (which the VM tests run as), so the mapping itself.
    let code = |errno| exabond_error::from_io_error(&io::Error::from_raw_os_error(errno));
    assert_eq!(code(libc::EACCES), EXABOND_ERR_PERMISSION);
    assert_eq!(code(libc::EPERM), EXABOND_ERR_PERMISSION);
    assert_eq!(code(libc::ENOENT), EXABOND_ERR_NOT_FOUND);
    assert_eq!(code(libc::ENOTDIR), EXABOND_ERR_NOT_FOUND);
    assert_eq!(code(libc::ENODEV), EXABOND_ERR_NOT_A_PAGE);
    assert_eq!(code(libc::EIO), EXABOND_ERR_IO);
    assert_eq!(code(libc::EMFILE), EXABOND_ERR_IO);
}

#[test]
fn permission_denied_for_an_unprivileged_process() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        eprintln!("running as root: skipped (root may read a mode 0000 file)");
        return;
    }
    let dir = tmpdir("perm");
    let p = dir.join("exabond-secret");
    std::fs::write(&p, vec![0u8; page::PAGE_SIZE]).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    assert_eq!(open(b"secret", Some(&dir)), Err(EXABOND_ERR_PERMISSION));
}

#[test]
fn null_arguments() {
    let mut err = 0;
    // SAFETY: NULL is allowed for every pointer argument of these functions.
    unsafe {
        assert!(exabond_open(ptr::null(), ptr::null(), &raw mut err).is_null());
        assert_eq!(err, EXABOND_ERR_NULL_ARG.code());
        assert!(exabond_open(ptr::null(), ptr::null(), ptr::null_mut()).is_null());
        err = 0;
        assert!(exabond_open_path(ptr::null(), &raw mut err).is_null());
        assert_eq!(err, EXABOND_ERR_NULL_ARG.code());
        assert_eq!(exabond_changed(ptr::null_mut()), EXABOND_ERR_NULL_ARG.code());
        assert_eq!(exabond_legacy_word(ptr::null()), 0);
        let mut s = std::mem::MaybeUninit::<exabond_snapshot>::uninit();
        assert_eq!(exabond_snapshot(ptr::null(), s.as_mut_ptr()), EXABOND_ERR_NULL_ARG.code());
        assert_eq!(exabond_is_stale(ptr::null(), 1), EXABOND_ERR_NULL_ARG.code());
        exabond_close(ptr::null_mut());
    }
    let dir = tmpdir("nulls");
    let _w = PageWriter::create(&dir, "bond0", &state(0, Some(0))).unwrap();
    let h = Handle(open(b"bond0", Some(&dir)).unwrap());
    // SAFETY: a live handle and a NULL output (allowed, reported).
    assert_eq!(unsafe { exabond_snapshot(h.0, ptr::null_mut()) }, EXABOND_ERR_NULL_ARG.code());
    // An open with a NULL `err` still works.
    let bond = CString::new("bond0").unwrap();
    let d = cstring(&dir);
    // SAFETY: NUL-terminated strings that outlive the call; NULL err is allowed.
    let r = unsafe { exabond_open(bond.as_ptr(), d.as_ptr(), ptr::null_mut()) };
    assert!(!r.is_null());
    drop(Handle(r));
}

#[test]
fn snapshot_is_what_was_published() {
    let dir = tmpdir("snapshot");
    let first = state(0, Some(0));
    let mut w = PageWriter::create(&dir, "bond0", &first).unwrap();
    let h = Handle(open(b"bond0", Some(&dir)).unwrap());
    let s = h.snapshot().unwrap();
    assert_eq!(s, exabond_snapshot::from(&first));
    assert_eq!(bytes_of(&s), bytes_of(&first), "byte for byte");

    let next = state(1, Some(2));
    w.publish(&next);
    let s = h.snapshot().unwrap();
    assert_eq!(bytes_of(&s), bytes_of(&next), "byte for byte");
    assert_eq!(s.magic, page::PAGE_MAGIC);
    assert_eq!(s.version, page::LAYOUT_VERSION);
    assert_eq!(s.failover_count, 1);
    assert_eq!(s.active_slot, 2);
    assert_eq!(s.active_ifindex, 13);
    assert_eq!(page::cstr(&s.active_name), "eth2");
    assert_eq!(page::cstr(&s.bond_name), "bond0");
    assert_eq!(s.legacy_word, legacy::encode(true, 1, 0));
    assert_eq!(s.slave_count, 3);
    assert_eq!(s.slaves[2].role, EXABOND_ROLE_ACTIVE);
    assert_eq!(s.slaves[1].role, EXABOND_ROLE_BACKUP);
    assert_eq!(s.slaves[1].ifindex, 12);
    assert_eq!(s.slaves[1].link, EXABOND_LINK_UP);
    assert_eq!(h.word(), next.legacy_word);
    // By path too.
    let h2 = Handle(open_path(w.path()).unwrap());
    assert_eq!(bytes_of(&h2.snapshot().unwrap()), bytes_of(&next));
}

#[test]
fn changed_reports_each_new_word_once() {
    let dir = tmpdir("changed");
    let mut w = PageWriter::create(&dir, "bond0", &state(0, Some(0))).unwrap();
    let mut h = Handle(open(b"bond0", Some(&dir)).unwrap());
    assert_eq!(h.changed(), 0, "nothing changed since the open");
    w.publish(&state(1, Some(1)));
    assert_eq!(h.changed(), 1);
    assert_eq!(h.changed(), 0, "reported once");
    // A heartbeat (same word, new block) is not a change.
    let mut hb = state(1, Some(1));
    hb.heartbeat_mono_ns += 1;
    w.publish(&hb);
    assert_eq!(h.changed(), 0);
    // No active slave: the flag bit changes the word.
    w.publish(&state(2, None));
    assert_eq!(h.changed(), 1);
    assert!(!legacy::is_active(h.word()));
    // A→B→A between two calls is invisible to the word, as with exasock; failover_count sees it.
    w.publish(&state(3, Some(1)));
    w.publish(&state(4, None));
    assert_eq!(h.changed(), 0);
    assert_eq!(h.snapshot().unwrap().failover_count, 4);
    // exabond_legacy_word does not consume a change.
    w.publish(&state(5, Some(2)));
    assert_eq!(h.word(), legacy::encode(true, 1, 0));
    assert_eq!(h.changed(), 1);
    assert_eq!(h.changed(), 0);
    // Each handle has its own cache.
    let mut h2 = Handle(open(b"bond0", Some(&dir)).unwrap());
    assert_eq!(h2.changed(), 0);
    w.publish(&state(6, Some(0)));
    assert_eq!((h.changed(), h2.changed()), (1, 1));
}

#[test]
fn staleness() {
    let dir = tmpdir("stale");
    let mut w = PageWriter::create(&dir, "bond0", &state(0, Some(0))).unwrap();
    let h = Handle(open(b"bond0", Some(&dir)).unwrap());
    assert_eq!(h.is_stale(60_000_000_000), 0, "fresh heartbeat");
    let mut old = state(0, Some(0));
    old.heartbeat_mono_ns = clock::monotonic_ns().saturating_sub(10_000_000_000);
    w.publish(&old);
    assert_eq!(h.is_stale(1_000_000_000), 1, "10 s old heartbeat");
    assert_eq!(h.is_stale(60_000_000_000), 0);
    let mut retired = state(0, Some(0));
    retired.flags |= FLAG_RETIRED;
    w.publish(&retired);
    assert_eq!(h.is_stale(u64::MAX), 1, "retired");
}

#[test]
fn inconsistent_pages() {
    let dir = tmpdir("inconsistent");
    let mut bytes = vec![0u8; page::PAGE_SIZE];
    let d = state(0, Some(0));
    bytes[page::DATA_OFFSET..page::DATA_OFFSET + page::DATA_SIZE].copy_from_slice(&bytes_of(&d));
    bytes[..4].copy_from_slice(&d.legacy_word.to_ne_bytes());
    let path = dir.join("exabond-bond0");
    std::fs::write(&path, &bytes).unwrap();
    let h = Handle(open(b"bond0", Some(&dir)).unwrap());
    assert_eq!(h.snapshot().unwrap(), exabond_snapshot::from(&d));
    // The writer "dies" mid-update: seq stays odd. Written through the file: the same page cache pages
    // the reader maps.
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_at(&1u64.to_ne_bytes(), page::SEQ_OFFSET as u64).unwrap();
    assert_eq!(h.snapshot(), Err(EXABOND_ERR_INCONSISTENT));
    assert_eq!(h.is_stale(1), EXABOND_ERR_INCONSISTENT.code());
    // And a page found in that state cannot be opened.
    assert_eq!(open(b"bond0", Some(&dir)), Err(EXABOND_ERR_INCONSISTENT));
}

#[test]
fn strerror_covers_every_code() {
    let mut seen = std::collections::HashSet::new();
    for code in -20..=5 {
        // SAFETY: exabond_strerror returns a static NUL-terminated string for any int.
        let msg = unsafe { CStr::from_ptr(exabond_strerror(code)) }.to_str().unwrap();
        assert!(!msg.is_empty());
        match exabond_error::from_code(code) {
            Some(e) => {
                assert_eq!(e.code(), code);
                assert!(seen.insert(msg), "duplicate message {msg}");
            }
            None => assert_eq!(msg, "unknown exabond error code"),
        }
    }
    assert_eq!(seen.len(), 10, "EXABOND_OK and 9 errors");
}

#[test]
fn without_an_agent_the_active_slave_comes_from_the_page() {
    let dir = tmpdir("active");
    let d = state(3, Some(1));
    let _w = PageWriter::create(&dir, "bond0", &d).unwrap();
    let h = Handle(open(b"bond0", Some(&dir)).unwrap());
    // SAFETY: a live handle.
    assert_eq!(unsafe { exabond_uses_fast(h.0) }, 0, "no reader socket here: the page");
    // SAFETY: as above.
    assert_eq!(unsafe { exabond_page_word(h.0) }, d.legacy_word);
    let mut a = std::mem::MaybeUninit::<exabond_active>::uninit();
    // SAFETY: a live handle and writable memory for one struct.
    assert_eq!(unsafe { exabond_active(h.0, a.as_mut_ptr()) }, 0);
    // SAFETY: EXABOND_OK means it was written.
    let a = unsafe { a.assume_init() };
    assert_eq!(
        (a.word, a.ifindex, a.kernel_ns, a.source),
        (d.legacy_word, d.active_ifindex, d.kernel_event_ns, EXABOND_ACTIVE_PAGE)
    );
    // SAFETY: NULL arguments are refused, not dereferenced.
    unsafe {
        assert_eq!(exabond_active(h.0, std::ptr::null_mut()), exabond_error::EXABOND_ERR_NULL_ARG as i32);
        assert_eq!(exabond_active(std::ptr::null(), std::ptr::null_mut()), exabond_error::EXABOND_ERR_NULL_ARG as i32);
        assert_eq!(exabond_uses_fast(std::ptr::null()), exabond_error::EXABOND_ERR_NULL_ARG as i32);
    }
}
