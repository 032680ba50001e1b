//! Ingest throughput and peak memory on ../shared/data/ml-1m-partial (487,650 ratings).
//!
//! Runs the release `eemu ingest` binary several times into fresh stores and prints wall time
//! (min and median), ratings per second, and the peak resident memory of the child process
//! (getrusage through a small Python parent; includes its ~20 ms start). Also times the library call in-process, without process start-up.
//! Target (issue 3): under 2 s wall, peak memory under 300 MB, on the 2-core dev machine.
//!
//!   make bench-ingest        (or: cargo bench --bench ingest)
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

const RUNS: usize = 5;
const RATINGS: f64 = 487_650.0;

/// Runs a command through a small Python parent and returns its peak RSS in MB. (Measuring the
/// child from this process would count the pages it shares with us at fork: this bench links
/// libtorch, the measured binary does not.)
fn run_measured(cmd: &mut Command) -> f64 {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
    let script = "import resource, subprocess, sys\n\
                  r = subprocess.run(sys.argv[1:])\n\
                  print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n\
                  sys.exit(r.returncode)";
    let out = Command::new("python3").arg("-c").arg(script).arg(program).args(args).output().expect("python3 runs");
    assert!(out.status.success(), "eemu ingest failed: {}", String::from_utf8_lossy(&out.stderr));
    let kb: f64 =
        String::from_utf8_lossy(&out.stdout).lines().last().and_then(|l| l.trim().parse().ok()).expect("peak RSS");
    kb / 1024.0
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let input = root.join("../shared/data/ml-1m-partial");
    if !input.join("ratings.dat").is_file() {
        println!("ingest bench: {} not present, nothing measured", input.display());
        return;
    }
    let config = root.join("configs/ml-1m.toml");
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut walls = Vec::new();
    let mut peaks = Vec::new();
    for run in 0..RUNS {
        let store = tmp.path().join(format!("cli-{run}"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_eemu"));
        cmd.args(["--quiet", "ingest", "--format", "ml-1m"]).arg("--input").arg(&input);
        cmd.arg("--config").arg(&config).arg("--store").arg(&store);
        let start = Instant::now();
        peaks.push(run_measured(&mut cmd));
        walls.push(start.elapsed().as_secs_f64());
    }
    walls.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let peak = peaks.iter().cloned().fold(0.0, f64::max);
    let cfg = eemu::config::Config::load(&config).expect("config");
    let request = eemu::ingest::IngestRequest {
        format: eemu::ingest::InputFormat::Ml1m,
        input: input.clone(),
        users: None,
        items: None,
    };
    let mut lib = Vec::new();
    for run in 0..RUNS {
        let store = eemu::store::Store::new(tmp.path().join(format!("lib-{run}")));
        let start = Instant::now();
        eemu::ingest::ingest(&request, &cfg, &store).expect("ingest");
        lib.push(start.elapsed().as_secs_f64());
    }
    lib.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("ingest ml-1m-partial ({RATINGS} ratings), {RUNS} runs, release build");
    println!(
        "  eemu ingest (process): min {:.3} s, median {:.3} s, {:.0} ratings/s at median",
        walls[0],
        walls[RUNS / 2],
        RATINGS / walls[RUNS / 2]
    );
    println!("  peak RSS of the process: {peak:.1} MB");
    println!("  ingest() in-process:   min {:.3} s, median {:.3} s", lib[0], lib[RUNS / 2]);
    println!(
        "  targets: wall < 2 s ({}), peak < 300 MB ({})",
        if walls[RUNS / 2] < 2.0 { "met" } else { "MISSED" },
        if peak < 300.0 { "met" } else { "MISSED" }
    );
}
