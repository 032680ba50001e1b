//! `eemu forget` end to end on small synthetic data (leave-one-out split, user features):
//! - no file of the store holds deleted data afterwards (tests/scan_store.py reads every file),
//!   and `eemu verify` passes;
//! - the store equals one ingested from the already-filtered input: same dataset id and lineage
//!   hashes, byte-identical shard models (CPU) and byte-identical recommendations;
//! - deleting one training interaction retrains one shard and leaves the other shards' files
//!   untouched (their cached labels are reused);
//! - a crash at every step of `forget`, and of a `nightly` applying a deferred batch, is completed
//!   by running the same command again, with the same result as an uninterrupted run.
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{copy_dir, eemu, ok, python, text};

/// The deleted user (every row and their features).
const USER: &str = "u00002";

/// Synthetic input in `d/in`, the fast pipeline config (leave-one-out split, as demo.toml), and
/// a request file `d/req.csv` deleting every row of [`USER`], one training interaction of u00001
/// (their earliest), and naming an unknown user.
/// Returns the deleted interaction (user, item).
fn setup(d: &Path) -> (String, String) {
    common::write_config(&d.join("tiny.toml"), &common::pipeline_config());
    ok(eemu(&["synth", "--out", "in", "--users", "60", "--items", "40", "--interactions-per-user", "8..30"], d));
    let rows = read_rows(&d.join("in/interactions.csv"));
    let earliest = rows.iter().filter(|r| r[0] == "u00001").min_by_key(|r| r[2].parse::<i64>().unwrap()).unwrap();
    let pair = (earliest[0].clone(), earliest[1].clone());
    std::fs::write(
        d.join("req.csv"),
        format!("request_id,user_id,item_id\nT-1,{},{}\nT-2,{USER},\nT-3,nobody,\n", pair.0, pair.1),
    )
    .unwrap();
    pair
}

fn read_rows(path: &Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().skip(1).map(|l| l.split(',').map(str::to_string).collect()).collect()
}

fn ingest(d: &Path, store: &str, interactions: &str, users: &str) {
    let args = [
        "ingest",
        "--config",
        "tiny.toml",
        "--input",
        interactions,
        "--users",
        users,
        "--items",
        "in/items.csv",
        "--store",
        store,
    ];
    ok(eemu(&args, d));
}

fn scan(d: &Path, store: &str, pair: &(String, String)) -> std::process::Output {
    Command::new(python())
        .arg(common::repo_path("tests/scan_store.py"))
        .args([store, USER, &format!("{},{}", pair.0, pair.1)])
        .current_dir(d)
        .output()
        .expect("python runs")
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn latest(store: &Path) -> String {
    std::fs::read_to_string(store.join("runs/LATEST")).unwrap().trim().to_string()
}

/// Shard index -> model file bytes.
fn models(store: &Path) -> BTreeMap<String, Vec<u8>> {
    common::snapshot(&store.join("shards")).into_iter().filter(|(k, _)| k.ends_with("model.safetensors")).collect()
}

/// Writes `d/filtered.csv` and `d/filtered-users.csv`: the input without the rows and the user
/// that `d/req.csv` deletes.
fn write_filtered(d: &Path, pair: &(String, String)) {
    let kept: Vec<String> = std::fs::read_to_string(d.join("in/interactions.csv"))
        .unwrap()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(',').collect();
            f[0] != USER && !(f[0] == pair.0 && f[1] == pair.1)
        })
        .map(str::to_string)
        .collect();
    std::fs::write(d.join("filtered.csv"), kept.join("\n") + "\n").unwrap();
    let users: Vec<String> = std::fs::read_to_string(d.join("in/users.csv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with(&format!("{USER},")))
        .map(str::to_string)
        .collect();
    std::fs::write(d.join("filtered-users.csv"), users.join("\n") + "\n").unwrap();
}

/// After `forget`, store `a` equals store `b` ingested from the filtered input: same dataset and
/// lineages, byte-identical models when every shard of `b` is trained from scratch, and
/// byte-identical recommendations.
fn assert_equals_filtered_ingest(d: &Path, pair: &(String, String)) {
    write_filtered(d, pair);
    ingest(d, "b", "filtered.csv", "filtered-users.csv");
    let (ma, mb) = (json(&d.join("a/manifest.json")), json(&d.join("b/manifest.json")));
    assert_eq!(ma["dataset"]["id"], mb["dataset"]["id"]);
    assert_eq!(ma["shards"], mb["shards"]);
    ok(eemu(&["train", "--store", "b", "--device", "cpu"], d));
    let (a, b) = (models(&d.join("a")), models(&d.join("b")));
    assert_eq!(a.len(), 3);
    assert_eq!(a, b, "shard models differ from training on the filtered input");
    ok(eemu(&["nightly", "--store", "b", "--device", "cpu"], d));
    assert_eq!(latest(&d.join("a")), latest(&d.join("b")));
    let file = format!("runs/{}/recommendations.parquet", latest(&d.join("a")));
    assert_eq!(std::fs::read(d.join("a").join(&file)).unwrap(), std::fs::read(d.join("b").join(&file)).unwrap());
}

#[test]
fn forget_leaves_no_trace_and_equals_training_on_the_filtered_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair = setup(d);
    ingest(d, "a", "in/interactions.csv", "in/users.csv");
    ok(eemu(&["nightly", "--store", "a", "--device", "cpu"], d));
    // The scanner finds the data before the deletion (it can fail).
    let o = scan(d, "a", &pair);
    assert!(!o.status.success(), "scan_store.py found nothing before the deletion");

    let out = ok(eemu(&["forget", "--requests", "req.csv", "--store", "a", "--device", "cpu"], d));
    assert!(out.contains("recorded 3 request(s)"), "{out}");
    assert!(
        out.contains("1 request(s) matched nothing") && out.contains("req.csv:4: user nobody (request T-3)"),
        "{out}"
    );
    let o = scan(d, "a", &pair);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{so}{se}");
    let out = ok(eemu(&["verify", "--store", "a"], d));
    assert!(out.contains("ok: every stored artifact"), "{out}");

    // The report: counts match the input, every shard is either retrained or reused.
    let rows = read_rows(&d.join("in/interactions.csv"));
    let removed = rows.iter().filter(|r| r[0] == USER || (r[0] == pair.0 && r[1] == pair.1)).count();
    let report = json(&d.join("a/reports/unlearning-1.json"));
    assert_eq!(report["rows_removed"], removed as u64);
    assert_eq!(report["users_removed"], 1);
    let entry = &report["ledger_entries"][0];
    assert_eq!(entry["requests"], 3);
    assert_eq!(entry["requests_applied"], 2);
    assert_eq!(entry["requests_not_found"][0]["request_id"], "T-3");
    let retrained = report["shards_retrained"].as_array().unwrap().len();
    assert!(retrained >= 1);
    assert_eq!(retrained + report["shards_reused"].as_array().unwrap().len(), 3);
    assert_eq!(report["run"].as_str().unwrap(), latest(&d.join("a")));
    assert!(std::fs::read_to_string(d.join("a/reports/unlearning-1.txt")).unwrap().contains("shards retrained"));

    // A store ingested from the filtered input has the same dataset, lineages, models and
    // recommendations.
    assert_equals_filtered_ingest(d, &pair);
}

/// With `assignment = "balanced"`, deleting a row can move the user's other rows to other
/// shards: every shard whose rows changed is retrained, and the result is still exactly that of
/// the filtered input.
#[test]
fn forget_is_exact_with_balanced_assignment_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair = setup(d);
    let mut config = common::pipeline_config();
    config.shards.assignment = eemu::config::ShardAssignment::Balanced;
    common::write_config(&d.join("tiny.toml"), &config);
    ingest(d, "a", "in/interactions.csv", "in/users.csv");
    let before = json(&d.join("a/manifest.json"));
    assert_eq!(before["config"]["shards"]["assignment"], "balanced", "{before}");
    ok(eemu(&["nightly", "--store", "a", "--device", "cpu"], d));
    ok(eemu(&["forget", "--requests", "req.csv", "--store", "a", "--device", "cpu"], d));
    let out = ok(eemu(&["verify", "--store", "a"], d));
    assert!(out.contains("ok: every stored artifact"), "{out}");
    assert_equals_filtered_ingest(d, &pair);
}

#[test]
fn forgetting_one_training_interaction_retrains_one_shard_and_leaves_the_others_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair = setup(d);
    ingest(d, "a", "in/interactions.csv", "in/users.csv");
    ok(eemu(&["nightly", "--store", "a", "--device", "cpu"], d));
    let before = json(&d.join("a/manifest.json"));
    let mtimes = |store: &Path| -> BTreeMap<PathBuf, std::time::SystemTime> {
        common::snapshot(&store.join("shards"))
            .keys()
            .map(|k| {
                let p = store.join("shards").join(k);
                (p.clone(), std::fs::metadata(&p).unwrap().modified().unwrap())
            })
            .collect()
    };
    let old = mtimes(&d.join("a"));
    std::fs::write(d.join("one.csv"), format!("user_id,item_id\n{},{}\n", pair.0, pair.1)).unwrap();
    let out = ok(eemu(&["forget", "--requests", "one.csv", "--store", "a", "--device", "cpu"], d));
    assert!(out.contains("trained 1 shard(s)") && out.contains("2 already had a model"), "{out}");
    let after = json(&d.join("a/manifest.json"));
    let changed: Vec<usize> =
        (0..3).filter(|&i| before["shards"][i]["lineage"] != after["shards"][i]["lineage"]).collect();
    assert_eq!(changed.len(), 1, "{out}");
    // The unchanged shards' folders: same files, not rewritten.
    let new = mtimes(&d.join("a"));
    for (path, time) in &old {
        let shard: usize =
            path.strip_prefix(d.join("a/shards")).unwrap().iter().next().unwrap().to_str().unwrap().parse().unwrap();
        if shard != changed[0] {
            assert_eq!(new.get(path), Some(time), "{} was rewritten", path.display());
        } else {
            assert!(!path.exists(), "{} of the superseded lineage is still there", path.display());
        }
    }
    let run = json(&d.join("a/runs").join(latest(&d.join("a"))).join("manifest.json"));
    for s in run["shards"].as_array().unwrap() {
        let index = s["index"].as_u64().unwrap() as usize;
        assert_eq!(s["labels_cached"], index != changed[0], "shard {index}: {s}");
    }
    let out = ok(eemu(&["verify", "--store", "a"], d));
    assert!(out.contains("ok"), "{out}");
}

fn eemu_failing_at(args: &[&str], cwd: &Path, point: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_eemu"))
        .args(args)
        .env("EEMU_FAIL_AT", point)
        .current_dir(cwd)
        .output()
        .expect("eemu runs")
}

/// Writes a half-written model file, as a process killed mid-write leaves it, into the folder of
/// every shard lineage of the store's manifest that has no model yet; asserts there is one.
fn plant_half_written_models(store: &Path) {
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let manifest = json(&store.join("manifest.json"));
    let mut planted = 0;
    for s in manifest["shards"].as_array().unwrap() {
        let dir = store.join("shards").join(s["index"].to_string()).join(s["lineage"].as_str().unwrap());
        if !dir.join("model.safetensors").exists() {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(format!(".model.safetensors.tmp-{dead}")), b"half").unwrap();
            planted += 1;
        }
    }
    assert!(planted > 0, "every shard was trained before the crash");
}

/// What a completed forget must leave: the reference's dataset and run, one applied and reported
/// ledger entry, nothing half-written, nothing deleted left, a store that verifies.
fn assert_completed(d: &Path, store: &str, reference: &Path, pair: &(String, String), context: &str) {
    let s = d.join(store);
    assert_eq!(
        json(&s.join("manifest.json"))["dataset"],
        json(&reference.join("manifest.json"))["dataset"],
        "{context}"
    );
    assert_eq!(latest(&s), latest(reference), "{context}");
    let file = format!("runs/{}/recommendations.parquet", latest(reference));
    assert_eq!(std::fs::read(s.join(&file)).unwrap(), std::fs::read(reference.join(&file)).unwrap(), "{context}");
    let ledger = json(&s.join("ledger.json"));
    let entries = ledger["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{context}: {ledger}");
    assert_eq!(entries[0]["state"], "applied", "{context}");
    assert_eq!(entries[0]["pending"].as_array().unwrap().len(), 0, "{context}");
    assert_eq!(
        entries[0]["outcome"]["rows_removed"],
        json(&reference.join("ledger.json"))["entries"][0]["outcome"]["rows_removed"],
        "{context}"
    );
    assert_eq!(entries[0]["report"], "unlearning-1.json", "{context}");
    assert_eq!(std::fs::read_dir(s.join("runs")).unwrap().count(), 2, "{context}: one run and LATEST");
    let o = scan(d, store, pair);
    let (so, se) = text(&o);
    assert!(o.status.success(), "{context}: {so}{se}");
    let out = ok(eemu(&["verify", "--store", store], d));
    assert!(out.contains("ok"), "{context}: {out}");
}

#[test]
fn a_crash_at_any_step_is_completed_by_running_the_same_command_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pair = setup(d);
    ingest(d, "base", "in/interactions.csv", "in/users.csv");
    ok(eemu(&["nightly", "--store", "base", "--device", "cpu"], d));
    copy_dir(&d.join("base"), &d.join("ref"));
    ok(eemu(&["forget", "--requests", "req.csv", "--store", "ref", "--device", "cpu"], d));
    let reference = d.join("ref");

    for point in eemu::fault::POINTS {
        let store = format!("crash-{point}");
        copy_dir(&d.join("base"), &d.join(&store));
        let args = ["forget", "--requests", "req.csv", "--store", &store, "--device", "cpu"];
        let o = eemu_failing_at(&args, d, point);
        let (so, se) = text(&o);
        assert_eq!(o.status.code(), Some(eemu::fault::EXIT_CODE), "{point}: {so}{se}");
        if point == "shard-trained" {
            // Another shard may have been mid-write when the process died: what it leaves must go.
            plant_half_written_models(&d.join(&store));
        }
        let out = ok(eemu(&args, d));
        if point == "ledger-appended" {
            assert!(out.contains("already in the ledger as entry 1"), "{point}: {out}");
        }
        assert_completed(d, &store, &reference, &pair, point);
    }

    // Deferred: only the ledger changes, verify names the pending entry, and a nightly that
    // crashes while applying it is completed by the next nightly.
    copy_dir(&d.join("base"), &d.join("deferred"));
    let out = ok(eemu(&["forget", "--requests", "req.csv", "--store", "deferred", "--defer"], d));
    assert!(out.contains("deferred"), "{out}");
    assert_eq!(json(&d.join("deferred/manifest.json")), json(&d.join("base/manifest.json")));
    let o = eemu(&["verify", "--store", "deferred"], d);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("entry 1 (3 deletion request(s)) is not applied yet"), "{err}");
    let nightly = ["nightly", "--store", "deferred", "--device", "cpu"];
    assert_eq!(eemu_failing_at(&nightly, d, "dataset-published").status.code(), Some(eemu::fault::EXIT_CODE));
    let out = ok(eemu(&nightly, d));
    assert!(out.contains("unlearning report"), "{out}");
    assert_completed(d, "deferred", &reference, &pair, "nightly after a deferred forget");
}

#[test]
fn request_file_errors_name_the_line_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    ingest(d, "a", "in/interactions.csv", "in/users.csv");
    let before = common::snapshot(&d.join("a"));
    std::fs::write(d.join("bad.csv"), "user_id,item_id\nu00001,3\n,4\n").unwrap();
    let o = eemu(&["forget", "--requests", "bad.csv", "--store", "a", "--device", "cpu"], d);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("bad.csv:3") && err.contains("user_id"), "{err}");
    std::fs::write(d.join("bad.csv"), "user,item\nu00001,3\n").unwrap();
    let o = eemu(&["forget", "--requests", "bad.csv", "--store", "a", "--device", "cpu"], d);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains("column 'user_id'"), "{err}");
    assert_eq!(common::snapshot(&d.join("a")), before, "a rejected request file changed the store");
}
