//! The commands that need libtorch, run by the `eemu-engine` binary. Data commands are
//! accepted too (so the engine can be called directly), and run as in the front.
use anyhow::Result;

use crate::cli::{execute, Cli, Outcome};
use crate::version;

/// Runs any command; returns what goes to stdout.
pub fn execute_engine(cli: &Cli) -> Result<String> {
    if cli.version {
        return Ok(version::report() + "\n");
    }
    match execute(cli)? {
        Outcome::Done(out) => Ok(out),
        Outcome::NeedsEngine => anyhow::bail!("internal error: no engine implementation for this command"),
    }
}
