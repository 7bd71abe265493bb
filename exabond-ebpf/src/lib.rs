//! Empty on purpose: the programs are in the `exabond` binary target (see Cargo.toml).
#![no_std]
