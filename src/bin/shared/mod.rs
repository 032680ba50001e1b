//! What both binaries' `main` do around a command: logging set-up, printing, exit codes.
//! Exit codes: 0 success, 1 failure, 2 invalid command line or config, 3 invalid input data.
use eemu_core::cli::Cli;
use eemu_core::error::EemuError;
use tracing_subscriber::EnvFilter;

/// Logs to stderr at the level chosen by -q / -v, or by `EEMU_LOG`.
pub fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("EEMU_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Prints a command's result, or its error with the matching exit code.
pub fn finish(result: anyhow::Result<String>) -> ! {
    match result {
        Ok(out) => {
            print!("{out}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(e.downcast_ref::<EemuError>().map_or(1, EemuError::exit_code))
        }
    }
}
