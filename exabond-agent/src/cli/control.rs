//! `exabond manage`, `exabond unmanage`, `exabond list`: requests to the running agent's control socket.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::DEFAULT_SOCKET;
use crate::control::{self, Reply};

/// Arguments shared by the control subcommands.
#[derive(clap::Args)]
pub struct ControlArgs {
    /// The agent's control socket.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
}

/// Send `req` and turn the reply into output and an exit code.
#[must_use]
pub fn run(args: &ControlArgs, req: &str) -> ExitCode {
    if let Some(name) = req.strip_prefix('+').or_else(|| req.strip_prefix('-')) {
        if let Err(e) = crate::ifname::validate(name) {
            let e = crate::policy::ManageError::from(e);
            eprintln!("exabond: {e}");
            return ExitCode::from(e.exit_code());
        }
    }
    match control::request(&args.socket, req) {
        Ok(Reply::Ok(m)) => {
            if !m.is_empty() {
                println!("{m}");
            }
            ExitCode::SUCCESS
        }
        Ok(Reply::Err(code, m)) | Err((code, m)) => {
            eprintln!("exabond: {m}");
            ExitCode::from(code)
        }
    }
}
