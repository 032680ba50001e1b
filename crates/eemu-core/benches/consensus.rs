//! Benchmark of the consensus clustering: wall time and peak memory of `consensus`, Dense or
//! Factorized, on synthetic per-shard labels (planted groups plus noise). One measurement per
//! process, so that the peak resident set size (VmHWM) belongs to that measurement alone.
//!
//!   cargo bench -p eemu-core --bench consensus -- --users 50000 --method factorized --runs 1
//!
//! (`make bench-consensus` runs the sizes reported in docs/benchmarks.md.) Lives in eemu-core so
//! the measured process does not load libtorch.
use std::time::Instant;

use anyhow::{bail, Context, Result};
use eemu_core::cluster::{adjusted_rand_index, consensus, planted_labels, ConsensusMethod, KMeansSettings};

/// What was asked on the command line.
struct Args {
    users: usize,
    method: ConsensusMethod,
    runs: usize,
    shards: usize,
    k: usize,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut args = Args { users: 5000, method: ConsensusMethod::Factorized, runs: 1, shards: 8, k: 25, seed: 7 };
    // `cargo bench` appends `--bench`: not ours.
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().with_context(|| format!("{flag} {value}: not a number"));
        match flag.as_str() {
            "--users" => args.users = number()?,
            "--runs" => args.runs = number()?,
            "--shards" => args.shards = number()?,
            "--k" => args.k = number()?,
            "--seed" => args.seed = value.parse().with_context(|| format!("--seed {value}: not a number"))?,
            "--method" => {
                args.method = match value.as_str() {
                    "dense" => ConsensusMethod::Dense,
                    "factorized" => ConsensusMethod::Factorized,
                    other => bail!("--method {other}: expected dense or factorized"),
                }
            }
            other => bail!("unknown flag {other} (known: --users --method --runs --shards --k --seed)"),
        }
    }
    Ok(args)
}

/// FNV-1a hash of the labels (None as u32::MAX), to compare the labels of separate runs.
fn labels_hash(labels: &[Option<u32>]) -> u64 {
    labels
        .iter()
        .flat_map(|l| l.unwrap_or(u32::MAX).to_le_bytes())
        .fold(0xcbf2_9ce4_8422_2325, |h, byte| (h ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Peak resident set size in MB (VmHWM of /proc/self/status).
fn peak_rss_mb() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM in /proc/self/status")?;
    let kb: f64 = line
        .split_whitespace()
        .nth(1)
        .context("VmHWM without a value")?
        .parse()
        .with_context(|| format!("VmHWM: {line}"))?;
    Ok(kb / 1024.0)
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let method = match args.method {
        ConsensusMethod::Dense => "dense",
        ConsensusMethod::Factorized => "factorized",
    };
    // k planted groups; per shard 20% of labels random and 10% of users missing.
    let (shards, truth) = planted_labels(args.users, args.shards, args.k, args.k, 0.2, 0.1, args.seed);
    println!("before consensus: peak_rss_mb={:.0}", peak_rss_mb()?);
    let settings =
        KMeansSettings { clusters: args.k, runs: args.runs, max_iterations: 100, tolerance: 1e-4, seed: args.seed };
    let start = Instant::now();
    let labels = consensus(&shards, &settings, args.method)?;
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_rss_mb()?;
    let mut found: Vec<u32> = labels.iter().flatten().copied().collect();
    let (labelled_truth, labelled_found): (Vec<u32>, Vec<u32>) =
        labels.iter().zip(&truth).filter_map(|(l, &t)| l.map(|l| (t, l))).unzip();
    let ari = adjusted_rand_index(&labelled_found, &labelled_truth);
    found.sort_unstable();
    found.dedup();
    println!(
        "consensus method={method} users={} shards={} k={} runs={} seconds={seconds:.2} peak_rss_mb={peak:.0} \
         clusters_found={} ari_planted={ari:.4} labels_hash={:016x}",
        args.users,
        args.shards,
        args.k,
        args.runs,
        found.len(),
        labels_hash(&labels)
    );
    Ok(())
}
