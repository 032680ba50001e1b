//! Per-shard training: determinism on the CPU, skipping trained lineages, the saved log.
mod common;

use common::*;
use eemu::config::{Algorithm, Config};
use eemu::data::synth::SynthFormat;
use eemu::engine::{train_and_save, TRAIN_LOG_FILE};
use eemu::store::{Store, MODEL_FILE};
use tch::Device;

fn tiny(algorithm: Algorithm) -> Config {
    let mut c = tiny_config();
    c.train.algorithm = algorithm;
    c
}

fn trained_model_bytes(dir: &std::path::Path, config: &Config, shard: usize) -> Vec<u8> {
    let files = synth_files(&dir.join("in"), SynthFormat::Csv, 11);
    let store = Store::new(dir.join("store"));
    ingest_into(store.root(), &files, config).unwrap();
    let (manifest, prepared) = store.load().unwrap();
    tch::set_num_threads(1);
    train_and_save(&store, &prepared, &manifest.shards[shard], Device::Cpu).unwrap();
    let dir = store.shard_dir(shard, &manifest.shards[shard].lineage);
    assert!(dir.join(TRAIN_LOG_FILE).is_file());
    std::fs::read(dir.join(MODEL_FILE)).unwrap()
}

#[test]
fn training_a_shard_twice_on_cpu_gives_byte_identical_weights() {
    for algorithm in [Algorithm::Fomaml, Algorithm::Standard, Algorithm::Maml, Algorithm::Reptile] {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let config = tiny(algorithm);
        let x = trained_model_bytes(a.path(), &config, 3);
        let y = trained_model_bytes(b.path(), &config, 3);
        assert!(x.len() > 1000);
        assert!(x == y, "{algorithm:?}: weights differ between two runs");
    }
}

#[test]
fn the_seed_changes_the_weights() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = tiny(Algorithm::Fomaml);
    let mut other = config.clone();
    other.seed = 1;
    assert!(trained_model_bytes(a.path(), &config, 0) != trained_model_bytes(b.path(), &other, 0));
}

#[test]
fn the_training_log_records_every_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(Algorithm::Fomaml);
    trained_model_bytes(dir.path(), &config, 1);
    let store = Store::new(dir.path().join("store"));
    let m = store.manifest().unwrap();
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.shard_dir(1, &m.shards[1].lineage).join(TRAIN_LOG_FILE)).unwrap())
            .unwrap();
    let epochs = log["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    assert!(epochs.iter().all(|e| e["loss"].as_f64().unwrap() > 0.0 && e["validation_hr10"].as_f64().is_some()));
    assert_eq!(log["lineage"], m.shards[1].lineage.as_str());
    assert!(store.is_trained(&m.shards[1]) && !store.is_trained(&m.shards[0]));
}
