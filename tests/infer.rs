//! `eemu nightly` / `eemu infer` end to end on small synthetic data: the output read back with
//! pyarrow (tests/check_run.py), byte-identical runs, idempotent re-runs, the label cache, and
//! clear errors.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{eemu, ok, python, text};

/// The fast pipeline config with a production split (every row is training data).
fn tiny() -> eemu::config::Config {
    let mut c = common::pipeline_config();
    c.split.mode = eemu::config::SplitMode::Production;
    c
}

/// Synthetic input in `d/in` (plus 3 users without interactions) and the tiny config.
fn setup(d: &Path) {
    common::write_config(&d.join("tiny.toml"), &tiny());
    ok(eemu(&["synth", "--out", "in", "--users", "60", "--items", "40", "--interactions-per-user", "6..30"], d));
    let users = d.join("in/users.csv");
    let mut text = std::fs::read_to_string(&users).unwrap();
    for u in ["zz-new-1", "zz-new-2", "zz-new-3"] {
        text.push_str(&format!("{u},25,F,3\n"));
    }
    std::fs::write(&users, text).unwrap();
}

fn ingest(d: &Path, store: &str) {
    ok(common::ingest_synth("tiny.toml", store, d));
}

fn latest(d: &Path, store: &str) -> PathBuf {
    let id = std::fs::read_to_string(d.join(store).join("runs/LATEST")).unwrap();
    d.join(store).join("runs").join(id.trim())
}

fn check_run(d: &Path, run: &Path, top_k: usize) {
    let o = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check_run.py"))
        .arg(run)
        .args(["in/interactions.csv", "in/users.csv", "in/items.csv"])
        .arg(top_k.to_string())
        .current_dir(d)
        .output()
        .expect("python runs");
    let (out, err) = text(&o);
    assert!(o.status.success(), "check_run.py failed:\n{out}\n{err}");
}

#[test]
fn nightly_writes_checked_top_k_lists_and_reruns_are_idempotent_and_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ingest(d, "a");
    let out = ok(eemu(&["nightly", "--store", "a", "--device", "cpu"], d));
    assert!(out.contains("trained 3 shard(s)") && out.contains("3 popularity fallback"), "{out}");
    let run = latest(d, "a");
    check_run(d, &run, 10);
    let status = ok(eemu(&["status", "--store", "a"], d));
    assert!(
        status.contains(&format!("latest run    {}", Path::new("a/runs").join(run.file_name().unwrap()).display())),
        "{status}"
    );

    // Unchanged inputs: the run is found complete, nothing is trained or written again, and
    // LATEST names it again even if it was changed meanwhile.
    std::fs::write(d.join("a/runs/LATEST"), "gone\n").unwrap();
    let out = ok(eemu(&["nightly", "--store", "a", "--device", "cpu"], d));
    assert!(out.contains("trained 0 shard(s)") && out.contains("already complete"), "{out}");
    assert_eq!(latest(d, "a"), run);
    assert_eq!(std::fs::read_dir(d.join("a/runs")).unwrap().count(), 2, "one run folder + LATEST");

    // Same data, config and seed in another store: byte-identical models, labels and output.
    ingest(d, "b");
    ok(eemu(&["nightly", "--store", "b", "--device", "cpu"], d));
    let run_b = latest(d, "b");
    assert_eq!(run.file_name(), run_b.file_name(), "same inputs, same run id");
    let file = "recommendations.parquet";
    assert!(std::fs::read(run.join(file)).unwrap() == std::fs::read(run_b.join(file)).unwrap());
    let labels = |store: &str| {
        let mut all = common::snapshot(&d.join(store).join("shards"));
        all.retain(|path, _| Path::new(path).file_name().unwrap().to_string_lossy().starts_with("labels-"));
        all
    };
    let (la, lb) = (labels("a"), labels("b"));
    assert_eq!(la.len(), 3, "one labels file per shard");
    assert!(la == lb);
}

#[test]
fn infer_reuses_cached_labels_writes_the_flat_layout_and_names_untrained_shards() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ingest(d, "s");
    let o = eemu(&["infer", "--store", "s", "--device", "cpu"], d);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("shard 0 has no model") && err.contains("eemu train"), "{err}");
    assert!(!d.join("s/runs").exists(), "a failed infer writes no run");

    ok(eemu(&["train", "--store", "s", "--device", "cpu"], d));
    ok(eemu(&["infer", "--store", "s", "--device", "cpu"], d));
    let first = latest(d, "s");
    let manifest = |run: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap()
    };
    let cached = |m: &serde_json::Value| -> Vec<bool> {
        m["shards"].as_array().unwrap().iter().map(|s| s["labels_cached"].as_bool().unwrap()).collect()
    };
    assert_eq!(cached(&manifest(&first)), vec![false; 3]);

    // Another output layout is another run; the shards' labels come from the cache.
    let out = ok(eemu(&["infer", "--store", "s", "--device", "cpu", "--layout", "flat"], d));
    let second = latest(d, "s");
    assert_ne!(first, second, "{out}");
    assert_eq!(cached(&manifest(&second)), vec![true; 3]);
    assert_eq!(manifest(&second)["layout"], "flat");
    check_run(d, &second, 10);
}

#[test]
fn verify_names_every_artifact_that_depends_on_deleted_rows_and_nightly_purges_old_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ingest(d, "s");
    ok(eemu(&["nightly", "--store", "s", "--device", "cpu"], d));
    let old_run = latest(d, "s");
    let out = ok(eemu(&["verify", "--store", "s"], d));
    assert!(out.contains("ok: every stored artifact derives from the current data"), "{out}");
    // Every shard was trained under the same caps: one setting, no note.
    let capped = "trained on Cpu, kernels MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2";
    assert_eq!(out.matches(" trained on ").count(), 1, "{out}");
    assert!(out.contains(capped) && !out.contains("note:"), "{out}");
    // ... and names the CPU, whose kind the bytes depend on under the same caps too.
    let cpu = eemu::engine::cpu_model().expect("/proc/cpuinfo");
    assert!(out.contains(&format!("{capped}, CPU {cpu}\n")), "{out}");

    // Delete one interaction (re-ingest without it): one shard gets a new lineage, and the run
    // computed from the old one must be reported, as must LATEST, which still names it.
    let all = std::fs::read_to_string(d.join("in/interactions.csv")).unwrap();
    let kept: Vec<&str> = all.lines().enumerate().filter(|(i, _)| *i != 5).map(|(_, l)| l).collect();
    std::fs::write(d.join("in/interactions.csv"), kept.join("\n") + "\n").unwrap();
    ingest(d, "s");
    let o = eemu(&["verify", "--store", "s"], d);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    let run_name = old_run.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&format!("runs/{run_name}: computed from dataset")), "{err}");
    assert!(err.contains("runs/LATEST: names run"), "{err}");
    assert_eq!(err.matches("uses superseded lineage").count(), 1, "exactly one shard changed: {err}");

    // A stray lineage folder is reported too.
    std::fs::create_dir_all(d.join("s/shards/0/0000stale")).unwrap();
    let (_, err) = text(&eemu(&["verify", "--store", "s"], d));
    assert!(err.contains("shards/0/0000stale: superseded lineage of shard 0"), "{err}");
    std::fs::remove_dir(d.join("s/shards/0/0000stale")).unwrap();

    // The nightly job retrains the changed shard, writes a new run and deletes the old one
    // (infer.keep_superseded_runs = 0): the store verifies again. It runs with MKL's kernels
    // set otherwise, and verify tells the retrained shard's setting apart from the others'.
    let nightly = std::process::Command::new(env!("CARGO_BIN_EXE_eemu"))
        .args(["nightly", "--store", "s", "--device", "cpu"])
        .env("MKL_CBWR", "COMPATIBLE")
        .current_dir(d)
        .output()
        .unwrap();
    let out = ok(nightly);
    assert!(out.contains("trained 1 shard(s)") && out.contains("deleted superseded run"), "{out}");
    assert!(!old_run.exists());
    let out = ok(eemu(&["verify", "--store", "s"], d));
    assert!(out.contains("ok"), "{out}");
    assert_eq!(out.matches(" trained on ").count(), 2, "{out}");
    let retrained = out.lines().find(|l| l.contains("kernels MKL_CBWR=COMPATIBLE ")).unwrap_or_else(|| panic!("{out}"));
    let shards = retrained.strip_prefix("shard(s) ").and_then(|l| l.split(' ').next()).unwrap();
    assert!(shards.parse::<usize>().is_ok(), "only the retrained shard: {retrained}");
    assert!(out.contains(capped) && out.contains("note: 2 training settings"), "{out}");
}
