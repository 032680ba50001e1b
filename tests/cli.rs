//! The `eemu` binary end to end: version, synth -> ingest -> status, exit codes.
use std::path::Path;
use std::process::{Command, Output};

fn eemu(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eemu")).args(args).current_dir(cwd).output().expect("eemu runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn version_names_eemu_libtorch_and_cuda() {
    let o = eemu(&["--version"], Path::new("."));
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains(&format!("eemu {}", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(out.contains("libtorch 2.11.0"), "{out}");
    assert!(out.contains("CUDA "), "{out}");
}

#[test]
fn synth_ingest_status_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml");
    let config = config.to_str().unwrap();
    let o = eemu(&["synth", "--out", "in", "--users", "150", "--items", "100", "--interactions-per-user", "10..20"], d);
    assert!(o.status.success(), "{:?}", text(&o));
    let o = eemu(
        &[
            "ingest",
            "--config",
            config,
            "--input",
            "in/interactions.csv",
            "--users",
            "in/users.csv",
            "--items",
            "in/items.csv",
            "--store",
            "s",
        ],
        d,
    );
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
    let mut config = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/demo.toml")).unwrap();
    config.push_str("\n[model]\nfeature_dim = 8\nuser_tower = [8]\nitem_tower = [8]\nembedding_dim = 8\n\n[train]\nepochs = 1\n\n[shards]\ncount = 2\n");
    std::fs::write(d.join("tiny.toml"), config).unwrap();
    let o = eemu(&["synth", "--out", "in", "--users", "40", "--items", "50", "--interactions-per-user", "8..12"], d);
    assert!(o.status.success(), "{:?}", text(&o));
    let ingest = [
        "ingest",
        "--config",
        "tiny.toml",
        "--input",
        "in/interactions.csv",
        "--users",
        "in/users.csv",
        "--items",
        "in/items.csv",
        "--store",
        "s",
    ];
    assert!(eemu(&ingest, d).status.success());
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
