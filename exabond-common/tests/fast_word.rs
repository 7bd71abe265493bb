//! The fast word's reader against a stand-in agent: a thread serving the reader socket with a memfd in
//! place of the `FAST_WORDS` map (the same mapping semantics for a reader: shared, read-only), written by the
//! test as the kernel would. The real map, probe and agent are tested in the VM (`exabond-e2e`, group
//! `fast`). (Integration tests: `missing_docs` does not apply.)

use std::os::fd::{AsFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use exabond_common::fast::{
    FastReply, FastRequest, FAST_ACTIVE, FAST_ERR_NOT_MANAGED, FAST_MAP_BYTES, FAST_OK, FAST_SLOT_SIZE,
};
use exabond_common::fast_reader::{send_reply, FastError, FastWord};
use exabond_common::page::{legacy, PageData, FLAG_ACTIVE};
use exabond_common::reader::{ActiveSource, FastSource, PageReader};
use exabond_common::writer::PageWriter;

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("exabond-fast-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A memfd of the map's size, and a writable view of it (the "kernel").
struct FakeMap {
    fd: OwnedFd,
    map: memmap2::MmapRaw,
}

impl FakeMap {
    fn new() -> Self {
        // SAFETY: a plain memfd_create with a NUL-terminated name.
        let raw = unsafe { libc::memfd_create(c"exabond-fast-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0, "memfd_create: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let f = std::fs::File::from(fd.try_clone().unwrap());
        f.set_len(FAST_MAP_BYTES as u64).unwrap();
        let map = memmap2::MmapOptions::new().len(FAST_MAP_BYTES).map_raw(&f).unwrap();
        Self { fd, map }
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a page-aligned mapping, 64-byte slots, aligned offsets")]
    fn u32_at(&self, slot: usize, off: usize) -> &AtomicU32 {
        // SAFETY: inside the mapping, 4-aligned; atomics only.
        unsafe { &*self.map.as_ptr().add(slot * FAST_SLOT_SIZE + off).cast::<AtomicU32>() }
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a page-aligned mapping, 64-byte slots, aligned offsets")]
    fn u64_at(&self, slot: usize, off: usize) -> &AtomicU64 {
        // SAFETY: inside the mapping, 8-aligned; atomics only.
        unsafe { &*self.map.as_ptr().add(slot * FAST_SLOT_SIZE + off).cast::<AtomicU64>() }
    }

    /// What the failover probe does: sequence odd, the kernel half, sequence even, the word.
    fn kernel_write(&self, slot: usize, word: u32, active: u32, ns: u64) {
        let seq = self.u64_at(slot, 8);
        let s = seq.load(Ordering::Relaxed);
        seq.store(s + 1, Ordering::Release);
        self.u32_at(slot, 16).store(active, Ordering::Relaxed);
        self.u32_at(slot, 20).store(if active == 0 { 0 } else { FAST_ACTIVE }, Ordering::Relaxed);
        self.u64_at(slot, 24).store(ns, Ordering::Relaxed);
        self.u64_at(slot, 32).fetch_add(1, Ordering::Relaxed);
        self.u32_at(slot, 40).store(active, Ordering::Relaxed);
        seq.store(s + 2, Ordering::Release);
        self.u32_at(slot, 0).store(word, Ordering::Release);
    }
}

/// Serve `n` requests on `socket`: bond "bond0" is slot 3, epoch 5, ifindex 9; anything else is not managed.
fn serve(socket: &Path, fd: OwnedFd, n: usize) -> std::thread::JoinHandle<Vec<String>> {
    let listener = UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        let mut asked = Vec::new();
        for _ in 0..n {
            let (s, _) = listener.accept().unwrap();
            let mut req = [0u8; 24];
            std::io::Read::read_exact(&mut &s, &mut req).unwrap();
            let req = FastRequest::from_bytes(&req);
            let name = req.bond_name().unwrap_or("").to_owned();
            if name == "bond0" {
                let reply = FastReply { status: FAST_OK, slot: 3, epoch: 5, bond_ifindex: 9, ..FastReply::error(0) };
                send_reply(&s, &reply, Some(fd.as_fd())).unwrap();
            } else {
                send_reply(&s, &FastReply::error(FAST_ERR_NOT_MANAGED), None).unwrap();
            }
            asked.push(name);
        }
        asked
    })
}

fn page(dir: &Path, word: u32) -> PageWriter {
    let mut d = PageData::new("bond0", 9, 1);
    d.flags = FLAG_ACTIVE;
    d.active_ifindex = 20;
    d.legacy_word = word;
    PageWriter::create(dir, "bond0", &d).unwrap()
}

#[test]
fn a_reader_reads_the_fast_word_then_the_page_once_it_is_retired() {
    let dir = tmpdir("reader");
    let socket = dir.join("reader.sock");
    let fake = FakeMap::new();
    let a = legacy::encode(true, 0xff, 0);
    let b = legacy::encode(true, 0xff, 1);
    fake.u32_at(3, 4).store(5, Ordering::Relaxed); // the agent's epoch
    fake.kernel_write(3, a, 20, 100);
    let server = serve(&socket, fake.fd.try_clone().unwrap(), 2);
    let _w = page(&dir, a);
    let mut r = PageReader::open_path_with(&dir.join("exabond-bond0"), FastSource::Socket(&socket)).unwrap();
    assert!(r.uses_fast(), "{:?}", r.fast_note());
    assert!(!r.changed());
    // The kernel's failover: the reader sees it before the page changes.
    fake.kernel_write(3, b, 21, 200);
    assert!(r.changed(), "the fast word changed");
    assert_eq!(r.legacy_word(), b);
    assert_eq!(r.page_word(), a, "the page still has the old word");
    let act = r.active().unwrap();
    assert_eq!((act.word, act.ifindex, act.kernel_ns, act.source), (b, 21, 200, ActiveSource::Fast));
    assert!(!r.changed());
    // Unmanaged: the agent changes the epoch; the reader goes back to the page, saying so once.
    fake.u32_at(3, 4).store(6, Ordering::Release);
    assert!(r.changed(), "a retired fast word is a change");
    assert!(!r.uses_fast());
    assert_eq!(r.legacy_word(), a, "the page's word now");
    assert_eq!(r.active().unwrap().source, ActiveSource::Page);
    assert!(r.fast_note().unwrap().contains("retired"));
    // Another bond: refused, named.
    let e = FastWord::connect(&socket, "bond7").err().unwrap();
    assert!(matches!(e, FastError::Refused { ref bond, .. } if bond == "bond7"), "{e}");
    assert_eq!(server.join().unwrap(), ["bond0", "bond7"]);
}

#[test]
fn no_agent_or_another_bond_means_the_page() {
    let dir = tmpdir("noagent");
    let _w = page(&dir, legacy::encode(true, 1, 2));
    let r = PageReader::open_path_with(&dir.join("exabond-bond0"), FastSource::Socket(&dir.join("none.sock"))).unwrap();
    assert!(!r.uses_fast());
    assert!(r.fast_note().unwrap().contains("none.sock"), "{:?}", r.fast_note());
    assert_eq!(r.legacy_word(), legacy::encode(true, 1, 2));
    assert_eq!(r.active().unwrap().source, ActiveSource::Page);
    // A slot that speaks for another ifindex than the page's bond is not used.
    let socket = dir.join("reader.sock");
    let fake = FakeMap::new();
    fake.u32_at(3, 4).store(5, Ordering::Relaxed);
    let server = serve(&socket, fake.fd.try_clone().unwrap(), 1);
    let mut other = PageData::new("bond0", 10, 1);
    other.legacy_word = 7;
    let d2 = tmpdir("noagent2");
    let _w2 = PageWriter::create(&d2, "bond0", &other).unwrap();
    let r = PageReader::open_path_with(&d2.join("exabond-bond0"), FastSource::Socket(&socket)).unwrap();
    assert!(!r.uses_fast());
    assert!(r.fast_note().unwrap().contains("ifindex 9"), "{:?}", r.fast_note());
    server.join().unwrap();
    let off = PageReader::open_path_with(&d2.join("exabond-bond0"), FastSource::Off).unwrap();
    assert_eq!(off.fast_note(), Some("not asked for"));
}

#[test]
fn a_slot_retired_before_the_reader_maps_it_is_refused() {
    let fake = FakeMap::new();
    fake.u32_at(1, 4).store(8, Ordering::Relaxed);
    let w = FastWord::map(&fake.fd, 1, 7, 4);
    assert!(matches!(w, Err(FastError::Retired { had: 7, now: 8 })));
    let w = FastWord::map(&fake.fd, 1, 8, 4).unwrap();
    fake.kernel_write(1, 0x0102_0001, 33, 9);
    let st = w.state().unwrap();
    assert_eq!((st.word, st.active_ifindex, st.kernel_ns, st.changes), (0x0102_0001, 33, 9, 1));
    assert!(FastWord::map(&fake.fd, 5000, 1, 1).is_err(), "a slot out of range");
}
