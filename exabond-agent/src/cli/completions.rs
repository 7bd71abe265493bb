//! `exabond completions <bash|zsh|fish>` and `exabond manpage`: generated from the clap definitions, so they
//! always match the binary (packaging: `exabond completions bash > /usr/share/bash-completion/completions/exabond`,
//! `exabond manpage --dir /usr/share/man/man1`).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::CommandFactory as _;

/// A shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    /// bash (bash-completion).
    Bash,
    /// zsh.
    Zsh,
    /// fish.
    Fish,
}

/// Arguments of `exabond completions`.
#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: Shell,
}

/// Arguments of `exabond manpage`.
#[derive(clap::Args)]
pub struct ManpageArgs {
    /// Write `exabond.1` and one page per subcommand (`exabond-agent.1`, ...) into DIR instead of printing
    /// `exabond.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The completion script for `shell`.
#[must_use]
pub fn script(shell: Shell) -> Vec<u8> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    match shell {
        Shell::Bash => clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "exabond", &mut out),
        Shell::Zsh => clap_complete::generate(clap_complete::Shell::Zsh, &mut cmd, "exabond", &mut out),
        Shell::Fish => clap_complete::generate(clap_complete::Shell::Fish, &mut cmd, "exabond", &mut out),
    }
    out
}

/// Print the completion script.
///
/// # Errors
/// A write error on stdout.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    std::io::stdout().lock().write_all(&script(args.shell)).context("writing to stdout")
}

/// The roff source of `exabond.1`.
///
/// # Errors
/// Rendering errors.
pub fn page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(super::Cli::command()).render(&mut out)?;
    Ok(out)
}

/// Print `exabond.1`, or write every page into `--dir`.
///
/// # Errors
/// Rendering or write errors.
pub fn manpage(args: &ManpageArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(super::Cli::command(), dir)
                .with_context(|| format!("writing the man pages into {}", dir.display()))
        }
        None => std::io::stdout().lock().write_all(&page()?).context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_has_the_subcommands() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = String::from_utf8(script(shell)).unwrap();
            for word in ["agent", "watch", "status", "metrics-addr", "config"] {
                assert!(s.contains(word), "{shell:?} script lacks {word}");
            }
        }
    }

    #[test]
    fn man_page() {
        let p = String::from_utf8(page().unwrap()).unwrap();
        assert!(p.starts_with(".ie \\n(.g .ds Aq"), "{}", &p[..80]);
        assert!(p.contains(".TH exabond 1"), "{p}");
        assert!(p.contains("watch"), "{p}");
        let dir = std::env::temp_dir().join(format!("exabond-man-{}", std::process::id()));
        manpage(&ManpageArgs { dir: Some(dir.clone()) }).unwrap();
        assert!(dir.join("exabond.1").exists() && dir.join("exabond-agent.1").exists());
        let _ = std::fs::remove_dir_all(dir);
    }
}
