//! The `eemu` binary end to end: version, synth -> ingest -> status, exit codes.
mod common;

use std::path::Path;

use common::{eemu, ingest_synth, ok, text};

#[test]
fn version_names_eemu_libtorch_and_cuda() {
    let o = eemu(&["--version"], Path::new("."));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("eemu {}", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("libtorch 2.11.0"), "{out}");
    assert!(out.contains("CUDA "), "{out}");
    assert!(out.contains("CPU kernels MKL_CBWR="), "{out}");
}

#[test]
fn synth_ingest_status_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml");
    let config = config.to_str().unwrap();
    let o = eemu(&["synth", "--out", "in", "--users", "150", "--items", "100", "--interactions-per-user", "10..20"], d);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = ingest_synth(config, "s", d);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("150 users, 100 items"), "{out}");
    let o = eemu(&["status", "--store", "s"], d);
    let (out, _) = text(&o);
    assert!(o.status.success());
    assert_eq!(out.matches("stale (no model for this lineage)").count(), 8, "{out}");
    assert!(out.contains("embedding (dense, 8)"), "{out}");
    let o = eemu(&["status", "--store", "s", "--json"], d);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["shards"].as_array().unwrap().len(), 8);
    assert_eq!(v["manifest"]["dataset"]["users"], 150);
}

#[test]
fn bad_input_exits_3_and_bad_config_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("x.csv"), "user_id,item_id,timestamp\n1,2,x\n").unwrap();
    let o = eemu(&["ingest", "--input", "x.csv", "--store", "s"], d);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("x.csv:2: column 'timestamp'"), "{:?}", text(&o));
    assert!(!d.join("s").join("manifest.json").exists());
    std::fs::write(d.join("c.toml"), "[shards]\ncount = -1\n").unwrap();
    let o = eemu(&["ingest", "--config", "c.toml", "--input", "x.csv"], d);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("c.toml"), "{:?}", text(&o));
    let o = eemu(&["status", "--store", "nowhere"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("not an eemu store"));
}

#[test]
fn train_skips_shards_whose_lineage_already_has_a_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = common::demo_config();
    config.model = eemu::config::ModelConfig {
        feature_dim: 8,
        user_tower: vec![8],
        item_tower: vec![8],
        embedding_dim: 8,
        ..Default::default()
    };
    config.train.epochs = 1;
    config.shards.count = 2;
    common::write_config(&d.join("tiny.toml"), &config);
    let o = eemu(&["synth", "--out", "in", "--users", "40", "--items", "50", "--interactions-per-user", "8..12"], d);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(ingest_synth("tiny.toml", "s", d).status.success());
    let o = eemu(&["train", "--store", "s", "--device", "cpu", "--shard", "1"], d);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("trained 1 shard(s)") && out.contains("0 already had a model"), "{out}");
    let o = eemu(&["train", "--store", "s", "--device", "cpu"], d);
    let (out, _) = text(&o);
    assert!(out.contains("trained 1 shard(s)") && out.contains("1 already had a model"), "{out}");
    let (status, _) = text(&eemu(&["status", "--store", "s"], d));
    assert_eq!(status.matches("  trained").count(), 2, "{status}");
}

/// `eemu evaluate` on the split of [`write_tiny_split`], on the CPU.
const TINY_SPLIT_ARGS: [&str; 11] = [
    "evaluate",
    "--config",
    "tiny.toml",
    "--train",
    "train.tsv",
    "--valid",
    "valid.csv",
    "--test",
    "test.csv",
    "--device",
    "cpu",
];

/// A tiny supplied split and config in `d`. Items 10..=13. User 1 trained on 10, 11, 13: its
/// test item 12 (which occurs only in the test file) is the only unmasked candidate left, so its
/// rank is 0 whatever the model. User 4 occurs only in the test file: evaluated with no training
/// items to mask.
fn write_tiny_split(d: &std::path::Path) {
    std::fs::write(
        d.join("tiny.toml"),
        "[model]\nfeature_dim = 4\nuser_tower = [8]\nitem_tower = [8]\nembedding_dim = 4\n[train]\nepochs = 1\nbatch_size = 2\n[shards]\ncount = 2\n",
    )
    .unwrap();
    std::fs::write(d.join("train.tsv"), "user_id\titem_id\n1\t10\n1\t11\n1\t13\n2\t10\n2\t11\n3\t13\n3\t10\n").unwrap();
    std::fs::write(d.join("valid.csv"), "user_id,item_id\n1,11\n2,13\n").unwrap();
    std::fs::write(d.join("test.csv"), "user_id,item_id\n1,12\n2,13\n4,10\n").unwrap();
}

#[test]
fn evaluate_goes_on_from_its_checkpoints_and_refuses_another_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_tiny_split(d);
    let run = |epochs: &str, eval_every: &str, checkpoints: bool, out: &str| {
        let mut args = TINY_SPLIT_ARGS.to_vec();
        args.extend(["--methods", "retrain,eemu", "--epochs", epochs, "--eval-every", eval_every, "--out", out]);
        if checkpoints {
            args.extend(["--checkpoint-dir", "ck"]);
        }
        eemu(&args, d)
    };
    let results = |file: &str| {
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join(file)).unwrap()).unwrap();
        let mut r = report["results"].clone();
        for m in r.as_array_mut().unwrap() {
            m.as_object_mut().unwrap().remove("train_seconds");
        }
        r
    };
    ok(run("3", "1", false, "straight.json"));
    let o = run("2", "1", true, "first.json");
    let err = text(&o).1;
    assert!(o.status.success() && !err.contains("resuming"), "{err}");
    assert!(d.join("ck/retrain.safetensors").is_file() && d.join("ck/eemu.safetensors").is_file());
    let o = run("3", "1", true, "resumed.json");
    let err = text(&o).1;
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming") && err.contains("retrain.safetensors"), "{err}");
    assert_eq!(results("resumed.json"), results("straight.json"), "resumed after 2 epochs vs 3 epochs straight");
    // Another --eval-every would evaluate other epochs: refused, naming the file and the field.
    let o = run("3", "2", true, "other.json");
    let err = text(&o).1;
    assert!(!o.status.success());
    assert!(err.contains("retrain.safetensors") && err.contains("eval_every: 1 there, 2 here"), "{err}");
    // Fewer epochs than the checkpoint holds cannot be had from it.
    let o = run("2", "1", true, "fewer.json");
    let err = text(&o).1;
    assert!(!o.status.success());
    assert!(err.contains("holds 3 epochs, more than the 2 asked for"), "{err}");
    assert!(!d.join("other.json").exists() && !d.join("fewer.json").exists());
    // Every method's checkpoint is checked before any trains: eemu's refuses the run before
    // retrain (first in line, without a checkpoint now) starts over.
    std::fs::remove_file(d.join("ck/retrain.safetensors")).unwrap();
    let o = run("3", "2", true, "other.json");
    let err = text(&o).1;
    assert!(!o.status.success() && err.contains("eemu.safetensors was written by another evaluation"), "{err}");
    assert!(!d.join("ck/retrain.safetensors").exists(), "retrain trained before the check: {err}");
}

/// `eemu evaluate --store S --config FILE` takes [adapt] from FILE (it acts after training) and
/// goes on from the checkpoints of a run with the store's config; FILE may not change what the
/// store's split or the trained models depend on.
#[test]
fn evaluate_takes_adaptation_settings_from_its_config_and_keeps_the_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let tiny = "[model]\nfeature_dim = 4\nuser_tower = [8]\nitem_tower = [8]\nembedding_dim = 4\n\
                [train]\nepochs = 1\nbatch_size = 4\n[shards]\ncount = 2\n";
    std::fs::write(d.join("tiny.toml"), tiny).unwrap();
    std::fs::write(
        d.join("adapt.toml"),
        format!("{tiny}[adapt]\nlearning_rate = 0.03\ntemperature = 100.0\nscope = \"user\"\n"),
    )
    .unwrap();
    std::fs::write(d.join("split.toml"), format!("{tiny}[split]\nmin_interactions = 4\n")).unwrap();
    std::fs::write(d.join("train.toml"), tiny.replace("batch_size = 4", "batch_size = 3")).unwrap();
    std::fs::write(d.join("scope.toml"), format!("{tiny}[adapt]\nscope = \"items\"\n")).unwrap();
    ok(eemu(
        &["synth", "--out", "in", "--seed", "3", "--users", "40", "--items", "30", "--interactions-per-user", "5..10"],
        d,
    ));
    ok(ingest_synth("tiny.toml", "s", d));
    let run = |config: Option<&str>, out: &str| {
        let mut args = vec!["evaluate", "--store", "s", "--methods", "eemu,eemu-adapt", "--epochs", "1"];
        args.extend(["--device", "cpu", "--checkpoint-dir", "ck", "--out", out]);
        if let Some(c) = config {
            args.extend(["--config", c]);
        }
        eemu(&args, d)
    };
    let rows = |file: &str| {
        let report: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join(file)).unwrap()).unwrap();
        report["results"].as_array().unwrap().clone()
    };
    ok(run(None, "store.json"));
    let store = rows("store.json");
    assert_eq!(store[1]["adaptation"]["learning_rate"], 2e-4, "{store:?}");
    assert_eq!(store[1]["adaptation"]["temperature"], 0.01, "{store:?}");
    assert_eq!(store[1]["adaptation"]["scope"], "all", "{store:?}");

    let o = run(Some("adapt.toml"), "adapt.json");
    let err = text(&o).1;
    assert!(o.status.success() && err.contains("resuming"), "the checkpoint was not used: {err}");
    let adapted = rows("adapt.json");
    assert_eq!(adapted[1]["adaptation"]["learning_rate"], 0.03, "{adapted:?}");
    assert_eq!(adapted[1]["adaptation"]["temperature"], 100.0, "{adapted:?}");
    assert_eq!(adapted[1]["adaptation"]["scope"], "user", "{adapted:?}");
    assert_eq!(adapted[0]["test"], store[0]["test"], "the same trained eemu models");
    assert_ne!(adapted[1]["validation"], store[1]["validation"], "another adaptation ranks alike");

    // A warm-up is named under the table and recorded in the report.
    let warm = tiny.replace("epochs = 1", "epochs = 3\nwarmup_epochs = 2\nwarmup_learning_rate = 0.01");
    std::fs::write(d.join("warm.toml"), warm).unwrap();
    ok(ingest_synth("warm.toml", "w", d));
    let args = ["evaluate", "--methods", "eemu", "--epochs", "3", "--device", "cpu"];
    let o = eemu(&[&args[..], &["--store", "w", "--out", "warm.json"]].concat(), d);
    let out = text(&o).0;
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(out.contains("the first 2 epochs of every trained method are plain training at 0.01"), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("warm.json")).unwrap()).unwrap();
    assert_eq!(
        (report["train"]["warmup_epochs"].as_u64(), report["train"]["learning_rate"].as_f64()),
        (Some(2), Some(2e-4))
    );
    let o = eemu(&[&args[..], &["--store", "s", "--out", "plain.json"]].concat(), d);
    assert!(o.status.success() && !text(&o).0.contains("warm-up"), "{}", text(&o).0);

    for (config, says) in [
        ("split.toml", "[split] or [ingest] settings differ"),
        ("train.toml", "[train] settings differ"),
        ("scope.toml", "unknown variant `items`, expected one of `all`, `user`, `vector`"),
    ] {
        let o = run(Some(config), "refused.json");
        let err = text(&o).1;
        assert!(!o.status.success() && err.contains(config) && err.contains(says), "{config}: {err}");
        assert!(!d.join("refused.json").exists());
    }
}

#[test]
fn evaluate_on_a_supplied_split_ranks_test_only_items_and_checks_columns() {
    use arrow::array::{AsArray, RecordBatch};
    use arrow::datatypes::{Int64Type, UInt32Type};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_tiny_split(d);
    let args = [
        TINY_SPLIT_ARGS.as_slice(),
        &["--methods", "retrain,mean,eemu-adapt"],
        &["--out", "eval.json", "--ranks-out", "ranks.parquet"],
    ]
    .concat();
    let o = eemu(&args, d);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("retrain") && out.contains("mean"), "{out}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["split"]["files"].as_array().unwrap().len(), 3);
    assert!(report["cpu_kernels"].as_str().unwrap().starts_with("MKL_CBWR="), "{report}");
    assert_eq!(report["results"][0]["test"]["users"], 3, "user 3 has no test row: trained on, not evaluated");
    // Each evaluated epoch logs the test metrics of the epoch chosen so far: after the last one
    // they are the reported result.
    for r in report["results"].as_array().unwrap().iter().filter(|r| r["method"] != "eemu-adapt") {
        let line = err
            .lines()
            .rfind(|l| l.contains("evaluated") && l.contains(&format!("method=\"{}\"", r["method"].as_str().unwrap())))
            .unwrap_or_else(|| panic!("no evaluated line for {}: {err}", r["method"]));
        let expect = format!(
            "chosen_epoch={} test_hr10=\"{:.4}\" test_ndcg10=\"{:.4}\"",
            r["epoch"],
            r["test"]["hr10"].as_f64().unwrap(),
            r["test"]["ndcg10"].as_f64().unwrap()
        );
        assert!(line.contains(&expect), "{line} lacks {expect}");
    }
    // Each shard's epochs are logged as they finish (1 epoch; RETRAIN has 1 shard, the others 2).
    for (method, shards) in [("retrain", 1), ("mean", 2), ("eemu", 2)] {
        let trained = |l: &&str| l.contains(" trained ") && l.contains(&format!("method=\"{method}\""));
        let lines: Vec<&str> = err.lines().filter(trained).collect();
        assert_eq!(lines.len(), shards, "{method}: one trained line per shard and epoch:\n{err}");
        for shard in 0..shards {
            assert!(
                lines.iter().any(|l| l.contains(&format!("shard={shard} epoch=1 loss="))),
                "{method}: no line for shard {shard}:\n{err}"
            );
        }
    }
    let file = std::fs::File::open(d.join("ranks.parquet")).unwrap();
    let batches: Vec<RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect();
    let b = &batches[0];
    let users = b.column_by_name("user_id").unwrap().as_primitive::<Int64Type>();
    let ranks = b.column_by_name("rank").unwrap().as_primitive::<UInt32Type>();
    assert_eq!(b.num_rows(), 9);
    for i in 0..b.num_rows() {
        match users.value(i) {
            1 => assert_eq!(ranks.value(i), 0, "user 1's test item is the only candidate left"),
            // user 2: items 12 and 13 are unmasked, so the rank is 0 or 1.
            2 => assert!(ranks.value(i) <= 1),
            // user 4: nothing masked, 4 items
            _ => assert!(ranks.value(i) <= 3),
        }
    }
    // `eemu compare` reads the same file: its HR@10 of each method is the one evaluate reported.
    let o = eemu(&["compare", "--ranks", "ranks.parquet", "--out", "cmp.json"], d);
    assert!(o.status.success(), "{:?}", text(&o));
    let cmp: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("cmp.json")).unwrap()).unwrap();
    let hr10 = |m: &str| -> f64 {
        let r = report["results"].as_array().unwrap().iter().find(|r| r["method"] == m).unwrap();
        r["test"]["hr10"].as_f64().unwrap()
    };
    let rows = cmp["comparisons"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "mean and eemu-adapt vs retrain, eemu-adapt vs mean: {cmp}");
    assert_eq!(&cmp["comparisons"], &report["paired"], "evaluate's paired statistics are compare's on its ranks");
    for r in rows {
        assert_eq!(r["users"], 3);
        assert_eq!(r["hr"]["method"].as_f64().unwrap(), hr10(r["method"].as_str().unwrap()), "{r}");
        assert_eq!(r["hr"]["baseline"].as_f64().unwrap(), hr10(r["baseline"].as_str().unwrap()), "{r}");
    }
    std::fs::write(d.join("bad.csv"), "user_id,item\n1,12\n").unwrap();
    let mut bad = args;
    bad[8] = "bad.csv";
    let o = eemu(&bad, d);
    assert_eq!(o.status.code(), Some(3));
    assert!(text(&o).1.contains("bad.csv:1: column 'item_id': column is missing"), "{:?}", text(&o));
}

#[test]
fn compare_pairs_users_across_rank_files_and_names_bad_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Two runs of the same split. K = 2: HR@2 counts ranks 0 and 1.
    // a.csv: retrain hits users 1, 2, 3, 4 (4 of 6); b.csv: mean hits 1, 2 and eemu hits 1, 2, 5.
    std::fs::write(
        d.join("a.csv"),
        "method,user_id,rank\nretrain,1,0\nretrain,2,1\nretrain,3,0\nretrain,4,1\nretrain,5,9\nretrain,6,3\n",
    )
    .unwrap();
    let b = "method,user_id,rank\n\
             mean,6,7\nmean,5,2\nmean,4,5\nmean,3,2\nmean,2,0\nmean,1,1\n\
             eemu,1,0\neemu,2,0\neemu,3,4\neemu,4,2\neemu,5,1\neemu,6,2\n";
    std::fs::write(d.join("b.csv"), b).unwrap();
    let args =
        ["compare", "--ranks", "a.csv", "--ranks", "tuned=b.csv", "--k", "2", "--resamples", "500", "--out", "c.json"];
    let o = eemu(&args, d);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("tuned:eemu") && out.contains("a:retrain"), "{out}");
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("c.json")).unwrap()).unwrap();
    let row = |m: &str, b: &str| -> serde_json::Value {
        c["comparisons"].as_array().unwrap().iter().find(|r| r["method"] == m && r["baseline"] == b).unwrap().clone()
    };
    // Pairing is by user id, not by row order (b.csv lists mean's users backwards).
    let e = row("tuned:eemu", "tuned:mean");
    assert_eq!((e["hr"]["method"].as_f64().unwrap(), e["hr"]["baseline"].as_f64().unwrap()), (0.5, 2.0 / 6.0));
    assert!((e["hr"]["relative"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    assert_eq!((e["hits_only_method"].as_u64(), e["hits_only_baseline"].as_u64()), (Some(1), Some(0)));
    let r = row("tuned:eemu", "a:retrain");
    // eemu hits 1, 2, 5; retrain hits 1, 2, 3, 4: only eemu user 5, only retrain users 3 and 4.
    assert_eq!((r["hits_only_method"].as_u64(), r["hits_only_baseline"].as_u64()), (Some(1), Some(2)));
    assert!((r["hr"]["relative"].as_f64().unwrap() + 0.25).abs() < 1e-12);
    let (lo, hi) = (r["hr"]["interval"][0].as_f64().unwrap(), r["hr"]["interval"][1].as_f64().unwrap());
    assert!(lo < -0.25 && -0.25 < hi, "[{lo}, {hi}]");
    // The same files and seed give the same bytes.
    let first = std::fs::read(d.join("c.json")).unwrap();
    assert!(eemu(&args, d).status.success());
    assert_eq!(first, std::fs::read(d.join("c.json")).unwrap());

    // Runs pooled with +: the baseline's per-user hit is the mean of mean's and eemu's
    // (users 1 and 2: 1; user 5: 1/2; others 0), so HR@2 2.5/6 against retrain's 4/6.
    let pooled = ["compare", "--ranks", "a.csv", "--ranks", "tuned=b.csv", "--k", "2", "--resamples", "500"];
    let o =
        eemu(&[&pooled[..], &["--baseline", "tuned:mean+eemu", "--methods", "retrain", "--out", "p.json"]].concat(), d);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(text(&o).0.contains("A+B: runs pooled"), "{}", text(&o).0);
    let p: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("p.json")).unwrap()).unwrap();
    let row = &p["comparisons"][0];
    assert_eq!((row["method"].as_str(), row["baseline"].as_str()), (Some("a:retrain"), Some("tuned:mean+tuned:eemu")));
    assert_eq!((row["method_runs"].as_u64(), row["baseline_runs"].as_u64()), (Some(1), Some(2)));
    assert!((row["hr"]["relative"].as_f64().unwrap() - 0.6).abs() < 1e-12, "{row}");
    assert_eq!((row["hits_only_method"].as_u64(), row["hits_only_baseline"].as_u64()), (Some(2), Some(1)));
    let o = eemu(&[&pooled[..], &["--baseline", "tuned:mean+zz"]].concat(), d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("no method zz"), "{:?}", text(&o));
    // --paired-runs: recorded in the report; a side of one run leaves nothing to pair; pools of
    // different sizes on both sides are refused, naming both.
    let two = ["--baseline", "tuned:mean+tuned:eemu", "--paired-runs"];
    let o = eemu(&[&pooled[..], &two, &["--methods", "retrain", "--out", "q.json"]].concat(), d);
    assert!(o.status.success(), "{:?}", text(&o));
    let q: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("q.json")).unwrap()).unwrap();
    assert_eq!(
        (q["paired_runs"].as_bool(), q["comparisons"][0]["runs_drawn_in_pairs"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(q["comparisons"][0]["hr"], p["comparisons"][0]["hr"], "one run on a side: the same draws");
    let o = eemu(&[&pooled[..], &two, &["--methods", "a:retrain+tuned:mean+tuned:eemu"]].concat(), d);
    assert_eq!(o.status.code(), Some(1), "{:?}", text(&o));
    assert!(text(&o).1.contains("pools 3 runs and tuned:mean+tuned:eemu pools 2"), "{:?}", text(&o));

    // Candidate rows of an adaptation grid have commas in their names: a list splits only at
    // commas outside parentheses (parse_names).
    let grid = "method,user_id,rank\nmean,1,0\nmean,2,5\n\"eemu-adapt(lr=0.1,steps=1)\",1,0\n\"eemu-adapt(lr=0.1,steps=1)\",2,1\n";
    std::fs::write(d.join("g.csv"), grid).unwrap();
    let args = ["compare", "--ranks", "g.csv", "--k", "2", "--resamples", "50", "--out", "g.json"];
    let o = eemu(&[&args[..], &["--baseline", "mean", "--methods", "eemu-adapt(lr=0.1,steps=1)"]].concat(), d);
    assert!(o.status.success(), "{:?}", text(&o));
    let g: serde_json::Value = serde_json::from_slice(&std::fs::read(d.join("g.json")).unwrap()).unwrap();
    assert_eq!(g["comparisons"][0]["method"], "eemu-adapt(lr=0.1,steps=1)", "{g}");
    assert_eq!(g["comparisons"][0]["hr"]["method"], 1.0, "{g}");

    // A user listed twice for a method: exit 3, naming the file, line and column.
    std::fs::write(d.join("dup.csv"), "method,user_id,rank\nmean,1,0\nmean,1,3\n").unwrap();
    let o = eemu(&["compare", "--ranks", "dup.csv"], d);
    assert_eq!(o.status.code(), Some(3), "{:?}", text(&o));
    assert!(
        text(&o).1.contains("dup.csv:3: column 'user_id'") && text(&o).1.contains("listed twice"),
        "{:?}",
        text(&o)
    );
    // Runs of different splits cannot be paired.
    std::fs::write(d.join("other.csv"), "method,user_id,rank\nmean,1,0\nmean,7,3\n").unwrap();
    let o = eemu(&["compare", "--ranks", "a.csv", "--ranks", "other.csv"], d);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o).1.contains("do not rank the same users"), "{:?}", text(&o));
}

#[test]
fn evaluate_rejects_bad_adaptation_settings_by_option_name() {
    let dir = tempfile::tempdir().unwrap();
    for (option, value, says) in [
        ("--adapt-steps", "1,0", "--adapt-steps: every step count must be at least 1"),
        (
            "--adapt-learning-rates",
            "1e-3,0",
            "--adapt-learning-rates: every step size must be a positive number, got 0",
        ),
        ("--adapt-learning-rates", "NaN", "got NaN"),
        (
            "--adapt-temperatures",
            "0.01,-1",
            "--adapt-temperatures: every temperature must be a positive number, got -1",
        ),
        ("--adapt-temperatures", "inf", "got inf"),
        ("--adapt-set-sizes", "7,0", "--adapt-set-sizes: every set size must be at least 1"),
        ("--adapt-negatives", "3,0", "--adapt-negatives: every count must be at least 1"),
        (
            "--adapt-scopes",
            "user,items",
            "unknown adaptation scope \"items\": expected \"all\", \"user\" or \"vector\"",
        ),
    ] {
        let o = eemu(&["evaluate", "--store", "no-store", option, value], dir.path());
        let (_, err) = text(&o);
        assert!(!o.status.success(), "{option} {value} was accepted");
        assert!(err.contains(says), "{option} {value}: {err}");
    }
}

#[test]
fn cpu_models_are_trained_under_kernels_capped_at_avx2() {
    // Left to themselves MKL, ATen and oneDNN use the widest instructions of the CPU, and the
    // bytes of a model depend on the machine. `eemu` caps them itself: a run with a clean
    // environment must give the bytes of a run with the caps set by hand. On a CPU with AVX-512
    // the two differ without the caps.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = common::demo_config();
    config.train.epochs = 1;
    config.shards.count = 2;
    common::write_config(&d.join("c.toml"), &config);
    let o = eemu(&["synth", "--out", "in", "--users", "150", "--items", "100", "--interactions-per-user", "10..20"], d);
    assert!(o.status.success(), "{:?}", text(&o));
    let caps = eemu::engine::CPU_KERNELS;
    let (mut models, mut logs) = (Vec::new(), Vec::new());
    for (store, by_hand) in [("clean", false), ("by-hand", true)] {
        assert!(ingest_synth("c.toml", store, d).status.success());
        let mut train = std::process::Command::new(env!("CARGO_BIN_EXE_eemu"));
        train.args(["train", "--store", store, "--device", "cpu", "--shard", "0"]).current_dir(d);
        for (name, value) in caps {
            if by_hand {
                train.env(name, value);
            } else {
                train.env_remove(name);
            }
        }
        let o = train.output().unwrap();
        assert!(o.status.success(), "{:?}", text(&o));
        let shard = std::fs::read_dir(d.join(store).join("shards/0")).unwrap().next().unwrap().unwrap().path();
        let log: serde_json::Value =
            serde_json::from_slice(&std::fs::read(shard.join("train-log.json")).unwrap()).unwrap();
        logs.push(log);
        models.push(std::fs::read(shard.join("model.safetensors")).unwrap());
    }
    assert!(models[0] == models[1], "a clean environment trained other bytes than the AVX2 caps");
    for log in logs {
        assert_eq!(log["cpu_kernels"], "MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2", "{log}");
    }
}
