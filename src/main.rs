//! `eemu`: the command-line front. Data commands (synth, ingest, status) run here without
//! loading libtorch (which costs about 0.8 s and 450 MB of memory at start-up); commands that
//! need it are handed to the `eemu-engine` binary next to this one, with the same arguments.
#[path = "bin/shared/mod.rs"]
mod shared;

use std::os::unix::process::CommandExt;

use clap::Parser;
use eemu_core::cli::{execute, Cli, Outcome};

fn main() {
    let cli = Cli::parse();
    shared::init_logging(&cli);
    let result = execute(&cli).and_then(|outcome| match outcome {
        Outcome::Done(out) => Ok(out),
        Outcome::NeedsEngine => {
            let engine = eemu_core::cli::engine_path()?;
            let err = std::process::Command::new(&engine).args(std::env::args_os().skip(1)).exec();
            Err(anyhow::anyhow!("cannot start {}: {err}", engine.display()))
        }
    });
    shared::finish(result)
}
