//! Cost of a deletion versus full training, on the CPU: for each dataset, the nightly job on a
//! fresh store (train every shard + batch inference) is timed, then `eemu forget` of
//! (a) 1 training interaction, (b) 100 training interactions, (c) every row of 1 user, each on its
//! own copy of the trained store. Prints rows removed, shards retrained, seconds per stage and
//! the ratio forget / full.
//!
//!   make bench-forget      (or: cargo bench --bench forget -- [--data demo|ml-100k|both]
//!                           [--epochs N] [--jobs N])
//!
//! `demo` is `eemu synth --seed 7` with configs/demo.toml (what `make demo` runs); `ml-100k` is
//! ../shared/data/ml-100k with configs/ml-100k.toml (skipped when absent). `--epochs` overrides
//! train.epochs of both configs (training time is linear in it, so the ratio barely depends on
//! it). Deleted rows are drawn with a seeded generator from the training rows (seed 42).
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Parser;
use eemu::cli::Cli;
use eemu::config::Config;
use eemu::data::split::Split;
use eemu::data::synth::{self, SynthFormat, SynthParams};
use eemu::ingest::{ingest, IngestRequest, InputFormat};
use eemu::store::Store;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

// The integration tests' helpers (copy_dir).
#[path = "../tests/common/mod.rs"]
mod common;
use common::copy_dir;

fn run(args: &[&str]) -> String {
    let cli = Cli::parse_from(std::iter::once("eemu").chain(args.iter().copied()));
    eemu::engine::execute_engine(&cli).unwrap_or_else(|e| panic!("eemu {}: {e:#}", args.join(" ")))
}

fn bench(name: &str, request: IngestRequest, config: &Config, jobs: &str, tmp: &Path) {
    let base = tmp.join(format!("{name}-store"));
    ingest(&request, config, &Store::new(&base)).expect("ingest");
    let (manifest, p) = Store::new(&base).load().expect("load");
    let store = base.display().to_string();
    let start = Instant::now();
    run(&["nightly", "--store", &store, "--device", "cpu", "--jobs", jobs]);
    let full = start.elapsed().as_secs_f64();
    println!(
        "{name}: {} users, {} items, {} interactions, {} shards, {} epochs; full nightly (train all shards + infer): {full:.1} s",
        manifest.dataset.users,
        manifest.dataset.items,
        manifest.dataset.interactions,
        manifest.shards.len(),
        config.train.epochs
    );
    println!(
        "  {:<18} {:>6} {:>10} {:>8} {:>8} {:>8} {:>12}",
        "forget", "rows", "retrained", "train s", "infer s", "total s", "total / full"
    );

    let x = &p.dataset.interactions;
    let mut train_rows: Vec<usize> = (0..x.len()).filter(|&r| p.split[r] == Split::Train).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    train_rows.shuffle(&mut rng);
    let pair =
        |r: usize| format!("{},{}", p.dataset.users.ids.display(x.user[r]), p.dataset.items.ids.display(x.item[r]));
    let user = p.dataset.users.ids.display(x.user[train_rows[0]]);
    let scenarios: [(&str, Vec<String>); 3] = [
        ("1 interaction", vec![pair(train_rows[0])]),
        ("100 interactions", train_rows[..100].iter().map(|&r| pair(r)).collect()),
        ("1 user", vec![format!("{user},")]),
    ];
    for (label, rows) in scenarios {
        let copy = tmp.join(format!("{name}-{}", label.replace(' ', "-")));
        copy_dir(&base, &copy);
        let requests = tmp.join(format!("{name}-{}.csv", label.replace(' ', "-")));
        std::fs::write(&requests, format!("user_id,item_id\n{}\n", rows.join("\n"))).unwrap();
        let start = Instant::now();
        run(&[
            "forget",
            "--requests",
            &requests.display().to_string(),
            "--store",
            &copy.display().to_string(),
            "--device",
            "cpu",
            "--jobs",
            jobs,
        ]);
        let total = start.elapsed().as_secs_f64();
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(copy.join("reports/unlearning-1.json")).unwrap()).unwrap();
        println!(
            "  {:<18} {:>6} {:>10} {:>8.1} {:>8.1} {:>8.1} {:>12.3}",
            label,
            report["rows_removed"],
            format!("{}/{}", report["shards_retrained"].as_array().map_or(0, Vec::len), manifest.shards.len()),
            report["seconds"]["train"].as_f64().unwrap_or(f64::NAN),
            report["seconds"]["infer"].as_f64().unwrap_or(f64::NAN),
            total,
            total / full
        );
        let _ = std::fs::remove_dir_all(&copy);
    }
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned());
    let data = arg("--data").unwrap_or_else(|| "both".into());
    let epochs = arg("--epochs").map(|e| e.parse::<usize>().expect("--epochs N"));
    let jobs = arg("--jobs").unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()).to_string());
    eemu::engine::pin_cpu_kernels();
    let tmp = tempfile::tempdir().expect("temp dir");
    let load = |rel: &str| {
        let mut c = Config::load(&root.join(rel)).expect("config");
        if let Some(e) = epochs {
            c.train.epochs = e;
        }
        c
    };
    println!("forget bench, CPU, {jobs} job(s)");
    if data == "demo" || data == "both" {
        let dir = tmp.path().join("synth");
        let params = SynthParams { seed: 7, ..SynthParams::default() };
        let files = synth::write(&synth::generate(&params).expect("synth"), &dir, SynthFormat::Csv).expect("write");
        let [input, users, items] = files;
        let request = IngestRequest { format: InputFormat::Csv, input, users: Some(users), items: Some(items) };
        bench("demo", request, &load("configs/demo.toml"), &jobs, tmp.path());
    }
    if data == "ml-100k" || data == "both" {
        let input = root.join("../shared/data/ml-100k");
        if input.join("u.data").is_file() {
            let request = IngestRequest { format: InputFormat::Ml100k, input, users: None, items: None };
            bench("ml-100k", request, &load("configs/ml-100k.toml"), &jobs, tmp.path());
        } else {
            println!("ml-100k: {} not present, not measured", input.display());
        }
    }
}
