//! `eemu evaluate` end to end on a tiny model: every method, metrics, ranks file, the step size of
//! per-user adaptation, checkpoints (resuming, the adaptation cache, refusing another CPU's).
mod common;

use std::fs::File;

use arrow::array::{Array, AsArray};
use arrow::datatypes::UInt32Type;
use common::*;
use eemu::config::AdaptScope;
use eemu::data::synth::SynthFormat;
use eemu::eval::{evaluate, paired, table, write_ranks, AdaptSetting, EvalOptions, Targets};
use eemu::store::{Prepared, Store};
use eemu::train::ShardData;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tch::Device;

/// The adaptation setting of step size `learning_rate` and `steps` steps, with the tiny config's
/// adaptation-set sampling.
fn setting(learning_rate: f64, steps: usize) -> AdaptSetting {
    AdaptSetting { learning_rate, steps, ..AdaptSetting::of_config(&tiny_config().adapt) }
}

/// Evaluation of `methods` for `epochs` epochs, validated every epoch, on CPU with 2 jobs;
/// no clusters, no adaptation grid, no checkpoints (struct-update the rest).
fn cpu_options(epochs: usize, methods: &[&str]) -> EvalOptions {
    EvalOptions {
        epochs,
        eval_every: 1,
        methods: methods.iter().map(|m| m.to_string()).collect(),
        device: Device::Cpu,
        jobs: 2,
        batch_clusters: vec![],
        adapt_grid: vec![],
        checkpoint_dir: None,
    }
}

#[test]
fn every_method_is_evaluated_and_ranks_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 21);
    let mut config = tiny_config();
    config.shards.count = 4;
    let store = Store::new(dir.path().join("store"));
    ingest_into(store.root(), &files, &config).unwrap();
    let (manifest, prepared) = store.load().unwrap();
    tch::set_num_threads(1);
    let methods = ["retrain", "mean", "eemu", "eemu-adapt", "eemu-batch"];
    let options = EvalOptions { batch_clusters: vec![3, 6], ..cpu_options(2, &methods) };
    let results = evaluate(&prepared, &Targets::new(&prepared).unwrap(), &options).unwrap();
    let names: Vec<&str> = results.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(names, ["retrain", "mean", "eemu", "eemu-adapt", "eemu-batch-3", "eemu-batch-6"]);
    let shards: Vec<usize> = results.iter().map(|r| r.shards).collect();
    assert_eq!(shards, vec![1, 4, 4, 4, 4, 4]);
    for r in &results {
        assert_eq!(r.test.users, manifest.dataset.test);
        assert_eq!(r.test_ranks.len(), manifest.dataset.test);
        assert!((0.0..=1.0).contains(&r.test.hr10) && r.test.hr10 <= r.test.hr20);
        assert!(r.test.ndcg10 <= r.test.hr10 && r.test.hr10_se >= 0.0);
        assert!((1..=2).contains(&r.epoch));
    }
    // Adaptation changes the scores, so at least some ranks move; per cluster it differs from
    // per user, and from another number of clusters.
    assert_ne!(results[2].test_ranks, results[3].test_ranks);
    assert_ne!(results[2].test_ranks, results[4].test_ranks);
    assert_ne!(results[3].test_ranks, results[4].test_ranks);
    assert_ne!(results[4].test_ranks, results[5].test_ranks);
    // One adaptation setting: the table says so instead of claiming a choice among several.
    let text = table(&results);
    assert!(text.contains("scope=all, the one setting tried)"), "{text}");
    let path = dir.path().join("ranks.parquet");
    write_ranks(&path, &prepared, &Targets::new(&prepared).unwrap(), &results).unwrap();
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap().build().unwrap();
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 6 * manifest.dataset.test);
    let ranks = batches[0].column_by_name("rank").unwrap().as_primitive::<UInt32Type>();
    assert!(ranks.values().iter().all(|&r| (r as usize) < manifest.dataset.items));
    assert_eq!(batches[0].column_by_name("user_id").unwrap().data_type(), &arrow::datatypes::DataType::Utf8);
    assert!(batches[0].column_by_name("method").unwrap().null_count() == 0);
    // The validation ranks, method by method (null where a user has no validation item), give
    // each method's validation HR@10.
    let valid: Vec<Option<u32>> = batches
        .iter()
        .flat_map(|b| b.column_by_name("valid_rank").unwrap().as_primitive::<UInt32Type>().iter().collect::<Vec<_>>())
        .collect();
    let per_method = manifest.dataset.test;
    for (k, r) in results.iter().enumerate() {
        let got: Vec<usize> =
            valid[k * per_method..(k + 1) * per_method].iter().flatten().map(|&x| x as usize).collect();
        assert_eq!(got, r.validation_ranks, "{}", r.method);
        assert!(!got.is_empty());
        let hr10 = got.iter().filter(|&&x| x < 10).count() as f64 / got.len() as f64;
        assert_eq!(hr10, r.validation.hr10, "{}", r.method);
    }
}

#[test]
fn per_user_adaptation_steps_by_adapt_learning_rate() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 21);
    tch::set_num_threads(1);
    // (EEMU ranks, EEMU-adapt ranks) after one epoch, with adaptation steps of size `lr`.
    let ranks = |name: &str, lr: f64| {
        let (_, r) = eval_adapt(dir.path(), &files, name, setting(lr, 1), &["eemu", "eemu-adapt"], vec![]);
        (r[0].test_ranks.clone(), r[1].test_ranks.clone())
    };
    // A step of 1e-12 leaves the float32 weights (and so every rank) as they were; the
    // training learning rate (2e-4 here) must not be used instead.
    let (plain, adapted) = ranks("tiny-step", 1e-12);
    assert_eq!(plain, adapted, "adaptation with adapt.learning_rate = 1e-12 moved ranks");
    let (plain_again, adapted) = ranks("big-step", 1e-2);
    assert_eq!(plain, plain_again, "adapt.learning_rate must not change training");
    assert_ne!(plain, adapted, "adaptation with adapt.learning_rate = 1e-2 moved no rank");
}

#[test]
fn adaptation_grid_reads_each_setting_and_chooses_on_validation() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 21);
    tch::set_num_threads(1);
    // Rows of an evaluation of retrain + eemu + eemu-adapt after one epoch, with the config's
    // [adapt] set to `adapt` and the given grid, and the methods paired against RETRAIN.
    let run = |name: &str, adapt: AdaptSetting, grid: Vec<AdaptSetting>| {
        let (cmp, r) = eval_adapt(dir.path(), &files, name, adapt, &["retrain", "eemu", "eemu-adapt"], grid);
        (r, cmp)
    };
    let s = setting;
    // Three sample their adaptation sets otherwise: nearly uniformly over the history, 20
    // items instead of the config's, and 20 items with 5 negatives; the next adapts the user side
    // only, the last two each user's vector alone.
    let grid = vec![
        s(1e-12, 1),
        s(3e-2, 1),
        s(3e-2, 3),
        AdaptSetting { temperature: 100.0, ..s(3e-2, 1) },
        AdaptSetting { set_size: 20, negatives: 20, ..s(3e-2, 1) },
        AdaptSetting { scope: AdaptScope::User, ..s(3e-2, 1) },
        AdaptSetting { scope: AdaptScope::Vector, ..s(3e-2, 1) },
        AdaptSetting { scope: AdaptScope::Vector, ..s(3e-2, 3) },
        AdaptSetting { set_size: 20, negatives: 5, ..s(3e-2, 1) },
    ];
    let (rows, compared) = run("grid", s(2e-4, 1), grid.clone());
    let names: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(names[..3], ["retrain", "eemu", "eemu-adapt"]);
    let candidates: Vec<_> = rows.iter().filter(|r| r.candidate).collect();
    assert_eq!(candidates.iter().map(|r| r.adaptation.unwrap()).collect::<Vec<_>>(), grid);
    assert!(candidates.iter().all(|r| r.method.starts_with("eemu-adapt(")), "{names:?}");
    assert_eq!(candidates[3].method, "eemu-adapt(lr=0.03,steps=1,T=100)");
    assert_eq!(candidates[4].method, "eemu-adapt(lr=0.03,steps=1,set=20)");
    assert_eq!(candidates[5].method, "eemu-adapt(lr=0.03,steps=1,scope=user)");
    assert_eq!(candidates[7].method, "eemu-adapt(lr=0.03,steps=3,scope=vector)");
    assert_eq!(candidates[8].method, "eemu-adapt(lr=0.03,steps=1,set=20,neg=5)");
    // A step of 1e-12 moves no float32 weight: the first candidate ranks as eemu does.
    assert_eq!(candidates[0].test_ranks, rows[1].test_ranks);
    // Each candidate is what an evaluation with that setting in the config gives, so reading 1
    // and 3 steps off one adaptation equals adapting 1 and 3 steps separately, and a grid's
    // temperature, set size or scope is the config's.
    for (k, g) in grid.iter().enumerate().skip(1) {
        let (alone, _) = run(&format!("alone-{k}"), *g, vec![]);
        assert_eq!(alone[2].adaptation, Some(*g));
        assert!(!alone[2].candidate);
        assert_eq!(alone[2].test_ranks, candidates[k].test_ranks, "setting {g:?}");
        assert_eq!(alone[2].validation.hr10, candidates[k].validation.hr10, "setting {g:?}");
        assert_eq!(alone[1].test_ranks, rows[1].test_ranks, "the grid must not change training");
    }
    assert_ne!(candidates[1].test_ranks, candidates[2].test_ranks, "1 and 3 steps of 3e-2 rank alike");
    assert_ne!(candidates[5].test_ranks, candidates[6].test_ranks, "scopes user and vector rank alike");
    assert_ne!(candidates[6].test_ranks, candidates[7].test_ranks, "1 and 3 vector steps rank alike");
    for k in [3, 4, 5, 6, 8] {
        assert_ne!(
            candidates[1].test_ranks, candidates[k].test_ranks,
            "{} ranks as the config's sampling and scope",
            candidates[k].method
        );
    }
    // eemu-adapt is the first candidate with the best validation HR@10; the test item plays no part.
    let best = candidates.iter().map(|r| r.validation.hr10).fold(f64::MIN, f64::max);
    let first_best = candidates.iter().find(|r| r.validation.hr10 == best).unwrap();
    assert_eq!(rows[2].adaptation, first_best.adaptation);
    assert_eq!(rows[2].test_ranks, first_best.test_ranks);
    // Candidates are listed, but only the chosen row is paired against the baselines.
    assert!(compared.iter().all(|m| !m.starts_with("eemu-adapt(")), "{compared:?}");
    assert!(compared.iter().any(|m| m == "eemu-adapt"), "{compared:?}");
    let text = table(&rows);
    assert_ne!(candidates[4].test_ranks, candidates[8].test_ranks, "20 and 5 negatives rank alike");
    assert!(text.contains("chosen on validation HR@10 among 9 settings"), "{text}");
    // The footer names the chosen setting whole, its sampling included.
    let a = rows[2].adaptation.unwrap();
    let footer = format!(
        "(eemu-adapt: adaptation lr={}, steps={}, T={}, set={}, neg={}, scope={},",
        a.learning_rate,
        a.steps,
        a.temperature,
        a.set_size,
        a.negatives,
        a.scope.name()
    );
    assert!(text.contains(&footer), "{text}");
    assert!(text.contains(&candidates[2].method), "{text}");
    assert!(!text.contains("validation item may be a negative"), "{text}");
    // With the validation item a candidate negative the row says so, and its sets are drawn
    // otherwise (a user's draws shift once its validation item is not rejected).
    let open = AdaptSetting { validation_as_negative: true, ..grid[4] };
    let (rows, _) = run("open", s(2e-4, 1), vec![open]);
    assert_eq!(rows[2].adaptation, Some(open));
    assert!(table(&rows).contains("validation item may be a negative"));
    assert_ne!(rows[2].test_ranks, candidates[4].test_ranks, "the validation item's place made no difference");
}

/// Evaluates `methods` for one epoch on a 2-shard tiny store ingested from `files` under
/// `dir/name`, with the config's `[adapt]` set to `adapt` and the given adaptation grid.
/// Returns the names of the methods `paired` compares, and the results.
fn eval_adapt(
    dir: &std::path::Path,
    files: &[std::path::PathBuf; 3],
    name: &str,
    adapt: AdaptSetting,
    methods: &[&str],
    adapt_grid: Vec<AdaptSetting>,
) -> (Vec<String>, Vec<eemu::eval::MethodResult>) {
    let mut config = tiny_config();
    config.shards.count = 2;
    config.adapt.learning_rate = adapt.learning_rate;
    config.adapt.steps = adapt.steps;
    config.adapt.temperature = adapt.temperature;
    config.adapt.set_size = adapt.set_size;
    config.adapt.negatives = if adapt.negatives == adapt.set_size { 0 } else { adapt.negatives };
    config.adapt.scope = adapt.scope;
    let store = Store::new(dir.join(name));
    ingest_into(store.root(), files, &config).unwrap();
    let (_, prepared) = store.load().unwrap();
    let options = EvalOptions { adapt_grid, ..cpu_options(1, methods) };
    let t = Targets::new(&prepared).unwrap();
    let r = evaluate(&prepared, &t, &options).unwrap();
    let compared = paired(&prepared, &t, &r).unwrap().into_iter().map(|c| c.method).collect();
    (compared, r)
}

/// A store of synthetic data (`seed`) in `shards` shards under `dir`, its prepared data and
/// evaluation targets, and an empty checkpoint folder; CPU work on one thread per shard.
fn checkpointed(dir: &std::path::Path, seed: u64, shards: usize) -> (Prepared, Targets, std::path::PathBuf) {
    checkpointed_with(dir, seed, shards, |_| {})
}

/// [`checkpointed`] with the tiny config changed by `change`.
fn checkpointed_with(
    dir: &std::path::Path,
    seed: u64,
    shards: usize,
    change: impl FnOnce(&mut eemu::config::Config),
) -> (Prepared, Targets, std::path::PathBuf) {
    let files = synth_files(&dir.join("in"), SynthFormat::Csv, seed);
    let mut config = tiny_config();
    config.shards.count = shards;
    change(&mut config);
    let store = Store::new(dir.join("store"));
    ingest_into(store.root(), &files, &config).unwrap();
    let (_, prepared) = store.load().unwrap();
    let t = Targets::new(&prepared).unwrap();
    tch::set_num_threads(1);
    let checkpoints = dir.join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    (prepared, t, checkpoints)
}

/// An evaluation stopped after 2 epochs and resumed from its checkpoints to 4 gives the results
/// of a straight 4-epoch run: every trained method, and per-user adaptation on the resumed
/// `eemu` models. The shards' models differ in size (each embeds its own users), as on real data.
#[test]
fn a_resumed_evaluation_gives_the_results_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    // 8 shards: enough that some users have no row in some shard.
    let (prepared, t, checkpoints) = checkpointed(dir.path(), 23, 8);
    let sizes: Vec<i64> = (0..prepared.config.shards.count)
        .map(|s| ShardData::from_prepared(&prepared, Some(s)).new_model(&prepared, Device::Cpu).params.count())
        .collect();
    assert!(sizes.windows(2).any(|w| w[0] != w[1]), "the shards' models should differ in size: {sizes:?}");
    let run = |epochs: usize, checkpoint_dir: Option<std::path::PathBuf>| {
        let options = EvalOptions {
            adapt_grid: vec![setting(1e-2, 1)],
            checkpoint_dir,
            ..cpu_options(epochs, &["retrain", "mean", "eemu", "eemu-adapt"])
        };
        evaluate(&prepared, &t, &options).unwrap()
    };
    let straight = run(4, None);
    let first = run(2, Some(checkpoints.clone()));
    for m in ["retrain", "mean", "eemu"] {
        assert!(checkpoints.join(format!("{m}.safetensors")).is_file(), "no checkpoint of {m}");
    }
    assert!(first.iter().filter(|r| r.method != "eemu-adapt").all(|r| r.validation_curve.len() == 2));
    let resumed = run(4, Some(checkpoints.clone()));
    // Asked again for 4 epochs, the checkpoints hold them all: nothing is trained, same results.
    let again = run(4, Some(checkpoints));
    for results in [&resumed, &again] {
        assert_eq!(results.len(), straight.len());
        for (a, b) in results.iter().zip(&straight) {
            assert_eq!(a.method, b.method);
            assert_eq!(a.validation_curve, b.validation_curve, "{}", a.method);
            assert_eq!(a.validation_curve.len(), if a.method == "eemu-adapt" { 0 } else { 4 });
            assert_eq!((a.epoch, a.validation, a.test), (b.epoch, b.validation, b.test), "{}", a.method);
            assert_eq!(a.test_ranks, b.test_ranks, "{}", a.method);
        }
    }
}

/// A run with a warm-up (plain training, then the algorithm with a fresh Adam) stopped before,
/// at and after the hand-over and resumed gives the numbers of an uninterrupted one: the
/// resumed Adam takes the step size of its epoch's phase.
#[test]
fn a_resumed_evaluation_with_a_warm_up_gives_the_results_of_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let (prepared, t, checkpoints) = checkpointed_with(dir.path(), 31, 2, |c| {
        (c.train.epochs, c.train.warmup_epochs, c.train.warmup_learning_rate) = (4, 2, 5e-3);
    });
    let run = |epochs: usize, checkpoint_dir: Option<std::path::PathBuf>| {
        let options = EvalOptions { checkpoint_dir, ..cpu_options(epochs, &["eemu"]) };
        evaluate(&prepared, &t, &options).unwrap().remove(0)
    };
    let straight = run(4, None);
    for stop in [1, 2, 3] {
        let folder = checkpoints.join(format!("stop-{stop}"));
        std::fs::create_dir_all(&folder).unwrap();
        assert_eq!(run(stop, Some(folder.clone())).validation_curve.len(), stop);
        let resumed = run(4, Some(folder));
        assert_eq!(resumed.validation_curve, straight.validation_curve, "stopped after epoch {stop}");
        assert_eq!(resumed.test_ranks, straight.test_ranks, "stopped after epoch {stop}");
    }
}

/// With a checkpoint folder, the ranks of the per-user adaptation grid are kept in
/// `DIR/eemu-adapt.json`: a run on the same chosen models reads each cached setting back and
/// adapts only the settings it lacks; a file made for other models, or unreadable, is replaced.
#[test]
fn the_adaptation_grid_is_read_back_for_the_same_models_only() {
    let dir = tempfile::tempdir().unwrap();
    let (prepared, t, checkpoints) = checkpointed(dir.path(), 29, 2);
    let s = setting;
    // The candidate rows of a 2-epoch evaluation of eemu-adapt over `grid`, in grid order.
    let run = |grid: Vec<AdaptSetting>, checkpoint_dir: Option<std::path::PathBuf>| {
        let options = EvalOptions { adapt_grid: grid, checkpoint_dir, ..cpu_options(2, &["eemu-adapt"]) };
        let rows = evaluate(&prepared, &t, &options).unwrap();
        rows.into_iter().filter(|r| r.candidate).collect::<Vec<_>>()
    };
    let file = checkpoints.join("eemu-adapt.json");
    let read = || serde_json::from_slice::<serde_json::Value>(&std::fs::read(&file).unwrap()).unwrap();
    let write = |v: &serde_json::Value| std::fs::write(&file, serde_json::to_vec(v).unwrap()).unwrap();
    let grid = vec![s(1e-2, 1), s(1e-2, 3)];
    let first = run(grid.clone(), Some(checkpoints.clone()));
    assert_eq!(first.len(), 2);
    let saved = read();
    assert_eq!(saved["entries"].as_array().unwrap().len(), 2, "{saved}");
    let hit_everyone = |v: &mut serde_json::Value| {
        for r in v["entries"][0]["test"].as_array_mut().unwrap() {
            *r = 0.into();
        }
    };

    // Same models: (1e-2, 1) is read back, as the altered file shows (every test item at rank 0);
    // the new rate 3e-2 is adapted, as a run without checkpoints adapts it.
    let mut altered = saved.clone();
    assert_eq!(altered["entries"][0]["steps"], 1, "{saved}");
    hit_everyone(&mut altered);
    write(&altered);
    let again = run(vec![s(1e-2, 1), s(1e-2, 3), s(3e-2, 1)], Some(checkpoints.clone()));
    assert_eq!(again[0].test.hr10, 1.0, "the cached ranks of (1e-2, 1) were not read back");
    assert_ne!(first[0].test.hr10, 1.0, "the test needs a setting that does not hit everyone");
    assert_eq!(again[1].test_ranks, first[1].test_ranks);
    // (Candidate rows are listed only for a grid of more than one setting.)
    let fresh = run(vec![s(3e-2, 1), s(1e-2, 1)], None);
    assert_eq!(again[2].test_ranks, fresh[0].test_ranks, "the uncached rate must be adapted as usual");
    assert_eq!(first[0].test_ranks, fresh[1].test_ranks, "the checkpoint folder must not change the ranks");
    assert_eq!(read()["entries"].as_array().unwrap().len(), 3);

    // Entries of a file written before the grid could vary the sampling have no temperature or
    // set size: they are the config's, and read back for it only, not for another temperature.
    let mut legacy = altered.clone();
    for e in legacy["entries"].as_array_mut().unwrap() {
        let e = e.as_object_mut().unwrap();
        assert!(e.remove("temperature_bits").is_some() && e.remove("set_size").is_some(), "{e:?}");
    }
    write(&legacy);
    let hot = AdaptSetting { temperature: 100.0, ..s(1e-2, 1) };
    let mixed = run(vec![s(1e-2, 1), hot], Some(checkpoints.clone()));
    assert_eq!(mixed[0].test.hr10, 1.0, "the old entry of (1e-2, 1) was not read back");
    let hot_fresh = run(vec![hot, s(3e-2, 1)], None);
    assert_eq!(mixed[1].test_ranks, hot_fresh[0].test_ranks, "another temperature must be adapted anew");
    // The old entries are written back completed: every entry names its sampling.
    let entries = read()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e["temperature_bits"].is_u64() && e["set_size"].is_u64()), "{entries:?}");
    // Entries that name no scope adapted every parameter: a user-side adaptation at the same
    // setting is not read from them but adapted, and its entry names its scope.
    let user = AdaptSetting { scope: AdaptScope::User, ..s(1e-2, 1) };
    let scoped = run(vec![s(1e-2, 1), user], Some(checkpoints.clone()));
    assert_eq!(scoped[0].test.hr10, 1.0, "the entry of (1e-2, 1), scope all, was not read back");
    let user_fresh = run(vec![user, hot], None);
    assert_eq!(scoped[1].test_ranks, user_fresh[0].test_ranks, "scope user must be adapted anew");
    let entries = read()["entries"].as_array().unwrap().clone();
    assert_eq!(entries.iter().filter(|e| e["scope"] == "user").count(), 1, "{entries:?}");
    assert_eq!(entries.iter().filter(|e| e.get("scope").is_none()).count(), 3, "{entries:?}");

    // A file of other models (another key) is not read: the true ranks come back, and the file is
    // replaced under this run's key.
    let mut other = altered.clone();
    other["key"] = "0".repeat(64).into();
    write(&other);
    let replaced = run(grid.clone(), Some(checkpoints.clone()));
    assert_eq!(replaced[0].test_ranks, first[0].test_ranks);
    assert_eq!(read()["key"], saved["key"]);
    assert_eq!(read()["entries"].as_array().unwrap().len(), 2);

    // An unreadable file is replaced too.
    std::fs::write(&file, b"{ not json").unwrap();
    let rewritten = run(grid, Some(checkpoints.clone()));
    assert_eq!(rewritten[0].test_ranks, first[0].test_ranks);
    assert_eq!(read()["key"], saved["key"]);
}

/// A checkpoint written on another kind of CPU is refused end to end, naming both CPUs, before
/// anything trains: the checkpoint is left as it was. (The CPU is recorded in the checkpoint's
/// `meta` entry; here it is rewritten to stand for another machine.)
#[test]
fn a_checkpoint_from_another_kind_of_cpu_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (prepared, t, checkpoints) = checkpointed(dir.path(), 31, 2);
    let run = |epochs: usize| {
        let options =
            EvalOptions { checkpoint_dir: Some(checkpoints.clone()), ..cpu_options(epochs, &["mean", "eemu"]) };
        evaluate(&prepared, &t, &options)
    };
    run(1).unwrap();
    let path = checkpoints.join("eemu.safetensors");
    let mut named = tch::Tensor::read_safetensors(&path).unwrap();
    let meta = named.iter_mut().find(|(n, _)| n == "meta").expect("a meta entry");
    let mut header: serde_json::Value =
        serde_json::from_slice(&Vec::<u8>::try_from(&meta.1).unwrap()).expect("the meta entry is JSON");
    let here = header["identity"]["cpu"].as_str().expect("the CPU is recorded on CPU runs").to_string();
    // Not a substring of `here` nor containing it, so the message must name each on its own.
    let elsewhere = "Some Other Processor (avx2)".to_string();
    assert!(!here.contains(&elsewhere) && !elsewhere.contains(&here));
    header["identity"]["cpu"] = elsewhere.clone().into();
    meta.1 = tch::Tensor::from_slice(&serde_json::to_vec(&header).unwrap());
    let refs: Vec<(&str, &tch::Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    tch::Tensor::write_safetensors(&refs, &path).unwrap();
    let before = (std::fs::read(&path).unwrap(), std::fs::read(checkpoints.join("mean.safetensors")).unwrap());

    let err = format!("{:#}", run(2).unwrap_err());
    assert!(err.contains("eemu.safetensors") && err.contains("cpu:"), "{err}");
    assert!(err.contains(&elsewhere) && err.contains(&here), "both CPUs should be named: {err}");
    // Checked before any method trains: neither checkpoint moved to epoch 2.
    let after = (std::fs::read(&path).unwrap(), std::fs::read(checkpoints.join("mean.safetensors")).unwrap());
    assert!(before == after, "a refused evaluation must leave the checkpoints alone");
}

/// The `popularity` baseline ranks the held-out item among the items the user has not trained
/// on by training degree (training rows of every shard), ties by item order; it trains nothing.
/// Expected ranks are counted here straight from the store's rows and split.
#[test]
fn popularity_ranks_the_unseen_items_by_training_degree() {
    use eemu::data::split::Split;
    let dir = tempfile::tempdir().unwrap();
    let (prepared, t, _) = checkpointed(dir.path(), 37, 2);
    let results = evaluate(&prepared, &t, &cpu_options(1, &["popularity"])).unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!((r.method.as_str(), r.shards, r.algorithm, r.epoch), ("popularity", 1, None, 0));

    let x = &prepared.dataset.interactions;
    let n_items = prepared.dataset.items.len();
    let n_users = prepared.dataset.users.len();
    let mut degree = vec![0usize; n_items];
    let mut seen = vec![std::collections::BTreeSet::new(); n_users];
    let mut test = vec![None; n_users];
    for row in 0..x.len() {
        let (u, i) = (x.user[row] as usize, x.item[row] as usize);
        match prepared.split[row] {
            Split::Train => {
                degree[i] += 1;
                seen[u].insert(i);
            }
            Split::Test => test[u] = Some(i),
            Split::Valid => {}
        }
    }
    let expected: Vec<usize> = (0..n_users)
        .filter_map(|u| test[u].map(|target| (u, target)))
        .map(|(u, target)| {
            (0..n_items)
                .filter(|&i| i != target && !seen[u].contains(&i))
                .filter(|&i| degree[i] > degree[target] || (degree[i] == degree[target] && i < target))
                .count()
        })
        .collect();
    assert_eq!(expected.len(), t.users.len());
    assert_eq!(r.test_ranks, expected);
    // Degrees do differ here, so the test above is not about ties alone.
    assert!(degree.iter().any(|&d| d != degree[0]));
    let text = table(&results);
    let line = text.lines().find(|l| l.starts_with("popularity")).expect("a popularity row");
    assert_eq!(line.split_whitespace().take(4).collect::<Vec<_>>(), ["popularity", "1", "-", "-"], "{text}");
}

/// `mean-adapt` adapts Mean's models as `eemu-adapt` adapts the `eemu` models: with the algorithm
/// set to `standard` both methods train the same models, so each adaptation setting gives the same
/// ranks on both. Its cache, `DIR/mean-adapt.json`, sits beside `eemu-adapt.json`, not over it,
/// and `mean-adapt` alone reads Mean's checkpoint.
#[test]
fn mean_adapt_adapts_means_models_as_eemu_adapt_adapts_eemus() {
    let dir = tempfile::tempdir().unwrap();
    let (prepared, t, checkpoints) =
        checkpointed_with(dir.path(), 37, 2, |c| c.train.algorithm = eemu::config::Algorithm::Standard);
    let grid = vec![setting(3e-2, 1), setting(3e-2, 3)];
    let run = |methods: &[&str]| {
        let options = EvalOptions {
            adapt_grid: grid.clone(),
            checkpoint_dir: Some(checkpoints.clone()),
            ..cpu_options(2, methods)
        };
        evaluate(&prepared, &t, &options).unwrap()
    };
    let rows = run(&["mean", "mean-adapt", "eemu", "eemu-adapt"]);
    let names: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(
        names,
        [
            "mean",
            "mean-adapt",
            "mean-adapt(lr=0.03,steps=1)",
            "mean-adapt(lr=0.03,steps=3)",
            "eemu",
            "eemu-adapt",
            "eemu-adapt(lr=0.03,steps=1)",
            "eemu-adapt(lr=0.03,steps=3)"
        ]
    );
    let row = |name: &str| rows.iter().find(|r| r.method == name).unwrap();
    assert_eq!(row("mean").test_ranks, row("eemu").test_ranks, "standard training should give Mean's models");
    for suffix in ["", "(lr=0.03,steps=1)", "(lr=0.03,steps=3)"] {
        let (m, e) = (row(&format!("mean-adapt{suffix}")), row(&format!("eemu-adapt{suffix}")));
        assert_eq!((m.validation, m.test), (e.validation, e.test), "mean-adapt{suffix}");
        assert_eq!(m.test_ranks, e.test_ranks, "mean-adapt{suffix}");
        assert_eq!((m.shards, m.algorithm, m.epoch), (row("mean").shards, row("mean").algorithm, row("mean").epoch));
    }
    assert_ne!(row("mean-adapt(lr=0.03,steps=3)").test_ranks, row("mean").test_ranks, "the adaptation moved nothing");
    assert!(checkpoints.join("mean-adapt.json").is_file() && checkpoints.join("eemu-adapt.json").is_file());
    let text = table(&rows);
    assert!(
        text.contains("(mean-adapt: adaptation lr=0.03") && text.contains("(eemu-adapt: adaptation lr=0.03"),
        "{text}"
    );
    // Alone, mean-adapt trains (here: reads) Mean's models and lists no mean row.
    let alone = run(&["mean-adapt"]);
    assert_eq!(alone[0].method, "mean-adapt");
    assert!(alone.iter().all(|r| r.method.starts_with("mean-adapt")), "{:?}", alone.iter().map(|r| &r.method));
    assert_eq!(alone[0].test_ranks, row("mean-adapt").test_ranks);
}
