//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use eemu::config::Config;
use eemu::data::synth::{self, SynthFormat, SynthParams};
use eemu::ingest::{ingest, IngestRequest, InputFormat};
use eemu::store::{Manifest, Store};

/// The demo config shipped in configs/.
pub fn demo_config() -> Config {
    Config::load(&repo_path("configs/demo.toml")).expect("configs/demo.toml is valid")
}

/// The demo config with a small model and two epochs, so training tests run in seconds.
pub fn tiny_config() -> Config {
    let mut c = demo_config();
    c.model.feature_dim = 8;
    c.model.user_tower = vec![16];
    c.model.item_tower = vec![16];
    c.model.embedding_dim = 8;
    c.train.epochs = 2;
    c.train.batch_size = 8;
    c
}

/// The demo config made fast for end-to-end runs of train + infer: 3 shards, a tiny model, two
/// epochs, 4 clusters, top-10 lists.
pub fn pipeline_config() -> Config {
    let mut c = demo_config();
    c.shards.count = 3;
    c.model = eemu::config::ModelConfig {
        feature_dim: 8,
        user_tower: vec![16],
        item_tower: vec![16],
        embedding_dim: 8,
        ..Default::default()
    };
    c.train.epochs = 2;
    c.train.batch_size = 8;
    c.cluster.clusters = 4;
    c.cluster.runs = 2;
    c.infer.top_k = 10;
    c.infer.batch_users = 16;
    c
}

/// Writes `config` as a TOML file (for tests that run the binary).
pub fn write_config(path: &Path, config: &Config) {
    std::fs::write(path, toml::to_string(config).expect("config serializes to TOML")).unwrap();
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Small synthetic data written into `dir`; returns [interactions, users, items].
pub fn synth_files(dir: &Path, format: SynthFormat, seed: u64) -> [PathBuf; 3] {
    let params = SynthParams {
        users: 120,
        items: 150,
        min_interactions: 12,
        max_interactions: 30,
        seed,
        ..SynthParams::default()
    };
    synth::write(&synth::generate(&params).unwrap(), dir, format).unwrap()
}

pub fn request(files: &[PathBuf; 3]) -> IngestRequest {
    IngestRequest {
        format: InputFormat::Auto,
        input: files[0].clone(),
        users: Some(files[1].clone()),
        items: Some(files[2].clone()),
    }
}

pub fn ingest_into(store: &Path, files: &[PathBuf; 3], config: &Config) -> anyhow::Result<Manifest> {
    ingest(&request(files), config, &Store::new(store))
}

/// Every file under `dir` (relative path -> bytes).
pub fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(p.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Rewrites a CSV file keeping the header and the data lines for which `keep(index)` is true.
pub fn filter_csv(src: &Path, dst: &Path, keep: impl Fn(usize) -> bool) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for (i, l) in lines.enumerate() {
        if keep(i) {
            out.push_str(l);
            out.push('\n');
        }
    }
    std::fs::write(dst, out).unwrap();
}

/// Runs the `eemu` binary in `cwd`.
pub fn eemu(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eemu")).args(args).current_dir(cwd).output().expect("eemu runs")
}

/// Ingests the files `eemu synth --out in` wrote in `cwd` into `store`, with the config file
/// `config`.
pub fn ingest_synth(config: &str, store: &str, cwd: &Path) -> Output {
    let files = ["--input", "in/interactions.csv", "--users", "in/users.csv", "--items", "in/items.csv"];
    eemu(&[&["ingest", "--config", config][..], &files, &["--store", store]].concat(), cwd)
}

/// stdout and stderr as text.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// stdout of a command that must succeed (else both streams in the panic).
pub fn ok(o: Output) -> String {
    let (out, err) = text(&o);
    assert!(o.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    out
}

/// The Python with pyarrow: $EEMU_PYTHON, else the project's .venv.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("EEMU_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(venv.is_file(), "{} is missing: run `make setup` (it installs pyarrow)", venv.display());
    venv
}

/// Copies the folder `src` (recursively) to `dst`.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}
