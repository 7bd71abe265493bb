//! Types shared by the exabond eBPF programs and the userspace agent.
//!
//! - [`event`]: records the eBPF programs send through the ring buffer.
//! - [`offsets`]: kernel struct field offsets, read from BTF by userspace and handed to the programs.
//! - [`policy_maps`]: what the enforcement (BPF LSM) maps hold.
//! - [`veto_rtnl`], [`veto_text`]: how the kernel reads the requests the vetoes judge (rtnetlink buffers,
//!   sysfs writes, ioctl names), shared by the eBPF programs and the host tests.
//! - [`fast`]: the fast word, the kernel's own publication of each managed bond's legacy word in a
//!   mappable map, and (feature `user`) its reader, [`fast_reader`].
//! - [`page`]: the per-bond page (`/dev/exabond-<bond>`): its layout, the exasock-compatible legacy word,
//!   and (feature `user`) the single writer and the reader.
//!
//! Everything here is `#[repr(C)]` with explicit padding: no `bool`, `Option` or implicit holes, so the
//! same bytes mean the same thing to the eBPF side, to Rust readers and to C readers.
#![cfg_attr(not(feature = "user"), no_std)]

pub mod event;
pub mod fast;
pub mod offsets;
pub mod page;
pub mod policy_maps;
pub mod veto_rtnl;
pub mod veto_text;

#[cfg(feature = "user")]
pub mod fast_reader;
#[cfg(feature = "user")]
pub mod reader;
#[cfg(feature = "user")]
pub mod writer;

#[cfg(feature = "user")]
pub mod clock;
#[cfg(feature = "user")]
mod seqlock;
