//! The command line: one subcommand per file.

pub mod agent;
pub mod read;

use clap::{Parser, Subcommand};

/// exabond: publishes which member link of each Linux active-backup bond is active, in a read-only page
/// (`/dev/exabond-<bond>`) that trading processes map and read without a syscall.
#[derive(Parser)]
#[command(name = "exabond", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the agent: load the eBPF programs, manage the given bonds and keep their pages up to date.
    Agent(agent::AgentArgs),
    /// Print one snapshot of a bond's page (any user; read-only).
    Read(read::ReadArgs),
}
