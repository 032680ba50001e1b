//! Per-shard training: determinism on the CPU, skipping trained lineages, the saved log; and the
//! step size of inference-time adaptation.
mod common;

use common::*;
use eemu::config::{Algorithm, Config};
use eemu::data::synth::SynthFormat;
use eemu::engine::{train_and_save, TRAIN_LOG_FILE};
use eemu::store::{Manifest, Prepared, Store, MODEL_FILE};
use tch::Device;

fn tiny(algorithm: Algorithm) -> Config {
    let mut c = tiny_config();
    c.train.algorithm = algorithm;
    c
}

/// Synthetic data ingested under `config` into a store in `dir`: the store, its manifest and
/// prepared data; libtorch on one thread, as the engine trains a shard.
fn ingested(dir: &std::path::Path, config: &Config) -> (Store, Manifest, Prepared) {
    let files = synth_files(&dir.join("in"), SynthFormat::Csv, 11);
    let store = Store::new(dir.join("store"));
    ingest_into(store.root(), &files, config).unwrap();
    let (manifest, prepared) = store.load().unwrap();
    tch::set_num_threads(1);
    (store, manifest, prepared)
}

fn trained_model_bytes(dir: &std::path::Path, config: &Config, shard: usize) -> Vec<u8> {
    let (store, manifest, prepared) = ingested(dir, config);
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

/// Trains shard 1 of a tiny store under `config`; the store (alive while its folder is) and the
/// shard's training log.
fn shard_1_log(config: &Config) -> (tempfile::TempDir, Store, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    trained_model_bytes(dir.path(), config, 1);
    let store = Store::new(dir.path().join("store"));
    let m = store.manifest().unwrap();
    let log =
        serde_json::from_slice(&std::fs::read(store.shard_dir(1, &m.shards[1].lineage).join(TRAIN_LOG_FILE)).unwrap())
            .unwrap();
    (dir, store, log)
}

#[test]
fn the_training_log_records_every_epoch() {
    let (_dir, store, log) = shard_1_log(&tiny(Algorithm::Fomaml));
    let m = store.manifest().unwrap();
    let epochs = log["epochs"].as_array().unwrap();
    assert_eq!(epochs.len(), 2);
    assert!(epochs.iter().all(|e| e["loss"].as_f64().unwrap() > 0.0 && e["validation_hr10"].as_f64().is_some()));
    assert_eq!(log["lineage"], m.shards[1].lineage.as_str());
    assert!(store.is_trained(&m.shards[1]) && !store.is_trained(&m.shards[0]));
    assert!(log.get("warmup_epochs").is_none(), "no warm-up, no field: {log}");

    // A warm-up is recorded beside the algorithm.
    let mut warm = tiny(Algorithm::Fomaml);
    warm.train.warmup_epochs = 1;
    let (_warm_dir, _, log) = shard_1_log(&warm);
    assert_eq!((log["algorithm"].as_str(), log["warmup_epochs"].as_u64()), (Some("fomaml"), Some(1)), "{log}");
}

/// Parameters after one epoch of shard 0 with `config`'s training settings.
fn one_epoch(config: &Config) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, prepared) = ingested(dir.path(), config);
    let data = eemu::train::ShardData::from_prepared(&prepared, Some(0));
    let mut model = data.new_model(&prepared, Device::Cpu);
    let mut adam = eemu::train::Adam::new(&model.params.flat, config.train.learning_rate);
    eemu::train::train_epoch(&mut model, &data, &config.train, &mut adam, config.seed, 1);
    Vec::<f32>::try_from(model.params.flat.detach().flatten(0, -1)).unwrap()
}

/// ||(a - start) - (b - start)|| / ||a - start||: how far apart two updates of `start` are.
fn relative_update_difference(a: &[f32], b: &[f32], start: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for ((x, y), s) in a.iter().zip(b).zip(start) {
        num += ((x - y) as f64).powi(2);
        den += ((x - s) as f64).powi(2);
    }
    (num / den).sqrt()
}

#[test]
fn the_batched_inner_loop_equals_the_per_user_one_where_the_math_says_so() {
    use eemu::config::InnerLoop;
    let with = |algorithm: Algorithm, inner_loop: InnerLoop, batch_size: usize| {
        let mut c = tiny(algorithm);
        c.train.inner_loop = inner_loop;
        c.train.batch_size = batch_size;
        c.train.inner_steps = 1;
        c
    };
    let start = {
        // The initial weights (an Adam step of 1e-12 moves nothing).
        let mut c = with(Algorithm::Reptile, InnerLoop::PerUser, 8);
        c.train.learning_rate = 1e-12;
        one_epoch(&c)
    };
    // Reptile with one inner step: mean of per-user SGD steps = one SGD step on the mean loss.
    // Only rounding differs (theta - phi cancels digits, and Adam divides by sqrt(v)).
    let per_user = one_epoch(&with(Algorithm::Reptile, InnerLoop::PerUser, 8));
    let batched = one_epoch(&with(Algorithm::Reptile, InnerLoop::Batched, 8));
    let reptile = relative_update_difference(&per_user, &batched, &start);
    // MAML with one user per meta-batch: the same computation.
    let per_user = one_epoch(&with(Algorithm::Maml, InnerLoop::PerUser, 1));
    let batched = one_epoch(&with(Algorithm::Maml, InnerLoop::Batched, 1));
    let maml_1 = relative_update_difference(&per_user, &batched, &start);
    // MAML with larger meta-batches shares the adapted weights: a different update.
    let per_user = one_epoch(&with(Algorithm::Maml, InnerLoop::PerUser, 8));
    let batched = one_epoch(&with(Algorithm::Maml, InnerLoop::Batched, 8));
    let maml_8 = relative_update_difference(&per_user, &batched, &start);
    println!(
        "relative update differences: reptile {reptile:.2e}, maml batch 1 {maml_1:.2e}, maml batch 8 {maml_8:.2e}"
    );
    assert!(reptile < 0.02, "reptile: batched update differs from per-user by {reptile}");
    assert!(maml_1 < 0.02, "maml, batch 1: batched update differs from per-user by {maml_1}");
    assert!(maml_8 > 10.0 * reptile.max(maml_1), "maml, batch 8: {maml_8} (an approximation, not the same update)");
}

#[test]
fn adaptation_steps_by_adapt_learning_rate_not_by_the_training_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(Algorithm::Fomaml);
    let (_, _, prepared) = ingested(dir.path(), &config);
    let model = eemu::train::ShardData::from_prepared(&prepared, Some(0)).new_model(&prepared, Device::Cpu);
    let history = eemu::infer::History::new(&prepared);
    let users: Vec<u32> = (0..8).collect();
    // Item vectors of the shard model after one adaptation step with `c` (0 steps: unadapted).
    let items = |c: &Config, steps: usize| {
        let moving = [eemu::infer::Moving::of(&model, c.adapt.scope)];
        let (_, y) = eemu::infer::cluster_vectors(&[&model], &moving, &users, &history, c, steps);
        Vec::<f32>::try_from(y.flatten(0, -1)).unwrap()
    };
    let largest_change = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
    let unadapted = items(&config, 0);
    let mut c = config.clone();
    c.adapt.learning_rate = 1e-3;
    let big = items(&c, 1);
    c.train.learning_rate = 10.0;
    assert_eq!(items(&c, 1), big, "train.learning_rate must not change the adaptation step");
    c.adapt.learning_rate = 1e-6;
    let small = items(&c, 1);
    let (big, small) = (largest_change(&big, &unadapted), largest_change(&small, &unadapted));
    assert!(big > 0.0 && small > 0.0, "an adaptation step moves the item vectors: {big} {small}");
    // A fresh Adam's first step moves every parameter by lr: 1000x the step, far more change.
    assert!(big > 100.0 * small, "adapt.learning_rate 1e-3 vs 1e-6: largest change {big} vs {small}");
}

/// With `warmup_epochs = 2`, epochs 1 and 2 are plain training at `warmup_learning_rate` and
/// epoch 3 is the configured algorithm from those weights with a fresh Adam at `learning_rate`:
/// the same bytes as those steps taken by hand, and not those of carrying the warm-up's Adam on.
#[test]
fn a_warm_up_trains_plain_then_hands_over_with_a_fresh_adam() {
    use eemu::train::{train_epoch, train_shard, Adam, ShardData};
    let dir = tempfile::tempdir().unwrap();
    let mut warm = tiny(Algorithm::Fomaml);
    (warm.train.epochs, warm.train.warmup_epochs, warm.train.warmup_learning_rate) = (3, 2, 5e-3);
    let (_, _, prepared) = ingested(dir.path(), &warm);
    let data = ShardData::from_prepared(&prepared, Some(0));
    let flat = |m: &eemu::model::TwoTower| Vec::<f32>::try_from(m.params.flat.detach().flatten(0, -1)).unwrap();

    let mut model = data.new_model(&prepared, Device::Cpu);
    let records = train_shard(&mut model, &data, &warm.train, warm.seed, |_, _, _| Ok(())).unwrap();
    assert_eq!(records.len(), 3);

    let mut plain = warm.train.clone();
    (plain.algorithm, plain.learning_rate, plain.warmup_epochs) = (Algorithm::Standard, 5e-3, 0);
    let mut meta = warm.train.clone();
    meta.warmup_epochs = 0;
    let mut by_hand = data.new_model(&prepared, Device::Cpu);
    let mut adam = Adam::new(&by_hand.params.flat, 5e-3);
    for epoch in 1..=2 {
        train_epoch(&mut by_hand, &data, &plain, &mut adam, warm.seed, epoch);
    }
    let handed_over = by_hand.params.copy();
    let mut fresh = Adam::new(&by_hand.params.flat, warm.train.learning_rate);
    train_epoch(&mut by_hand, &data, &meta, &mut fresh, warm.seed, 3);
    assert!(flat(&model) == flat(&by_hand), "warm-up then fomaml differs from the steps by hand");

    // Carrying the warm-up's Adam (moments, step count) into epoch 3 gives other weights.
    by_hand.params.load(&handed_over);
    let (m, v) = adam.moments();
    let mut carried = Adam::from_state(warm.train.learning_rate, adam.step_count(), m.copy(), v.copy());
    train_epoch(&mut by_hand, &data, &meta, &mut carried, warm.seed, 3);
    assert!(flat(&model) != flat(&by_hand), "the algorithm must start with a fresh Adam");
}

/// FOMAML's row-sparse CPU steps (the form `train_epoch` takes on the CPU) write the bytes of
/// the dense steps: the weights, Adam's moments and its step count after three epochs, on a
/// shard whose sides have lookup tables, multi-hot and dense features; and the same losses.
#[test]
fn fomaml_row_sparse_trains_the_bytes_of_the_dense_steps() {
    use eemu::train::{train_epoch_in, Adam, FomamlForm, ShardData};
    let dir = tempfile::tempdir().unwrap();
    let config = tiny(Algorithm::Fomaml);
    let (_, _, prepared) = ingested(dir.path(), &config);
    let data = ShardData::from_prepared(&prepared, Some(1));
    let floats = |t: &tch::Tensor| Vec::<f32>::try_from(t.detach().flatten(0, -1)).unwrap();
    let run = |form: FomamlForm| {
        let mut model = data.new_model(&prepared, Device::Cpu);
        let mut adam = Adam::new(&model.params.flat, config.train.learning_rate);
        let losses: Vec<f64> = (1..=3)
            .map(|epoch| train_epoch_in(&mut model, &data, &config.train, &mut adam, config.seed, epoch, form))
            .collect();
        let (m, v) = adam.moments();
        (losses, adam.step_count(), [floats(&model.params.flat), floats(m), floats(v)])
    };
    let initial = floats(&data.new_model(&prepared, Device::Cpu).params.flat);
    let (dense_losses, dense_steps, dense) = run(FomamlForm::Dense);
    let (sparse_losses, sparse_steps, sparse) = run(FomamlForm::RowSparse);
    let moved = dense[0].iter().zip(&initial).filter(|(a, b)| a != b).count();
    assert!(moved > initial.len() / 2, "training moves the weights: {moved} of {}", initial.len());
    assert!(dense_steps > 100, "two Adam steps a user: {dense_steps}");
    assert_eq!((&sparse_losses, sparse_steps), (&dense_losses, dense_steps));
    for (name, a, b) in [("weights", &dense[0], &sparse[0]), ("m", &dense[1], &sparse[1]), ("v", &dense[2], &sparse[2])]
    {
        let differ = a.iter().zip(b.iter()).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!(differ, 0, "{name}: {differ} of {} values differ", a.len());
    }
}
