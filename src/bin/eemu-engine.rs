//! `eemu-engine`: runs the commands that need libtorch. Started by `eemu` with the same
//! arguments; it can also be called directly.
#[path = "shared/mod.rs"]
mod shared;

use clap::Parser;
use eemu::cli::Cli;

fn main() {
    eemu::engine::pin_cpu_kernels();
    let cli = Cli::parse();
    shared::init_logging(&cli);
    shared::finish(eemu::engine::execute_engine(&cli))
}
