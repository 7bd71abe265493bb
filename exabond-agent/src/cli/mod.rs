//! The command line: one subcommand per file.

pub mod agent;
pub mod completions;
pub mod control;
pub mod read;
pub mod status;
pub mod watch;

use clap::{Parser, Subcommand};

/// Exit codes, shown in `exabond --help`.
const EXIT_CODES: &str = "\
Control words (root-only socket /run/exabond/control.sock, one line per request):
  +BOND     place BOND under management          (exabond manage BOND)
  -BOND     stop managing BOND                    (exabond unmanage BOND)
  ?DEVICE   may DEVICE join a managed bond?       (exabond member DEVICE)
  list      the managed bonds, space-separated    (exabond list)
  status    agent state as JSON                   (exabond status)
  pitfalls  the MAC pitfalls seen, as JSON        (exabond status)
  watch     one JSON line per event, until closed (exabond watch --json)

Exit codes of manage/unmanage/member/list/status/watch:
  0 ok    1 internal error    2 usage    3 invalid name    4 no such interface
  5 not a bond    6 mode is not active-backup    7 a member (or DEVICE) is not a SmartNIC port
  8 a member (or DEVICE) is a bond (nesting)    9 a member (or DEVICE) is a VLAN device    10 permission denied (not root)
  11 no agent running";

/// exabond: publishes which member link of each Linux active-backup bond is active, in a read-only page
/// (`/dev/exabond-<bond>`) that trading processes map and read without a syscall.
#[derive(Parser)]
#[command(name = "exabond", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run the agent: load the eBPF programs, manage bonds and keep their pages up to date.
    Agent(agent::AgentArgs),
    /// Print one snapshot of a bond's page (any user; read-only).
    Read(read::ReadArgs),
    /// Place a bond under management (checks: name, exists, is a bond, active-backup, every member a
    /// SmartNIC port; an empty bond is fine).
    Manage {
        /// The bond.
        bond: String,
        /// Socket.
        #[command(flatten)]
        ctl: control::ControlArgs,
    },
    /// Stop managing a bond: its page is marked retired, then removed.
    Unmanage {
        /// The bond.
        bond: String,
        /// Socket.
        #[command(flatten)]
        ctl: control::ControlArgs,
    },
    /// Per managed bond: mode, active slave, members with driver and link, failovers, last change and
    /// its source, enforcement mode and vetoes counted.
    Status(status::StatusArgs),
    /// May DEVICE join a managed bond? The agent's verdict, the one its kernel-side veto applies: exit 0
    /// allowed; 7 not a SmartNIC port; 8 a bond; 9 a VLAN device; 4 no such device in the agent's view
    /// (absent, or created an instant ago and not judged yet).
    Member {
        /// The device.
        device: String,
        /// Socket.
        #[command(flatten)]
        ctl: control::ControlArgs,
    },
    /// List the managed bonds.
    List {
        /// Socket.
        #[command(flatten)]
        ctl: control::ControlArgs,
    },
    /// Follow the agent's events live, one line each.
    ///
    /// Failovers, link changes, members added/removed, vetoes (with pid and command), manage/unmanage,
    /// reverts, MAC pitfalls: a UTC timestamp and a sentence, or with --json the JSON lines of the control
    /// socket's `watch` request. Ends with exit 0 when the agent stops.
    Watch(watch::WatchArgs),
    /// Print a shell completion script.
    #[command(hide = true)]
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff), or write every page into a directory.
    #[command(hide = true)]
    Manpage(completions::ManpageArgs),
}

#[cfg(test)]
mod tests {
    use super::EXIT_CODES;
    use crate::exit_code::Exit;

    #[test]
    fn every_exit_code_is_in_the_help() {
        let codes = EXIT_CODES.split_once("Exit codes").map(|(_, c)| c).unwrap_or_default();
        for e in Exit::ALL {
            assert!(codes.contains(&format!(" {} ", e.code())), "exit code {e} ({e:?}) missing from --help");
        }
    }
}
