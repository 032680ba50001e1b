//! The scheduler entry points jobs/nightly.sh and jobs/forget.sh (with jobs/lib.sh): the exit
//! codes their headers promise for a missing store, request file or binary, the store lock they
//! share (75), and a deferred deletion recorded by forget.sh and applied by the next nightly.sh.
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eemu, ok, repo_path, text};

fn job(script: &str, args: &[&str], cwd: &Path, env: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg(repo_path(&format!("jobs/{script}")))
        .args(args)
        .env("EEMU_BIN", env!("CARGO_BIN_EXE_eemu"))
        .env("EEMU_DEVICE", "cpu")
        .envs(env.iter().copied())
        .current_dir(cwd)
        .output()
        .expect("bash runs")
}

fn fails_with(o: &Output, code: i32, message: &str) {
    let (out, err) = text(o);
    assert_eq!(o.status.code(), Some(code), "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains(message), "stderr lacks {message:?}:\n{err}");
}

#[test]
fn jobs_check_their_inputs_share_the_store_lock_and_apply_deferred_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut config = common::pipeline_config();
    config.split.mode = eemu::config::SplitMode::Production;
    common::write_config(&d.join("tiny.toml"), &config);
    ok(eemu(&["synth", "--out", "in", "--users", "60", "--items", "40", "--interactions-per-user", "6..30"], d));
    ok(common::ingest_synth("tiny.toml", "s", d));
    let first_user =
        std::fs::read_to_string(d.join("in/interactions.csv")).unwrap().lines().nth(1).unwrap().to_string();
    let user = first_user.split(',').next().unwrap().to_string();
    std::fs::write(d.join("delete.csv"), format!("user_id,request_id\n{user},ticket-1\n")).unwrap();

    fails_with(&job("nightly.sh", &["nostore"], d, &[]), 2, "nightly: nostore is not an eemu store");
    fails_with(&job("forget.sh", &[], d, &[]), 2, "usage: jobs/forget.sh REQUESTS [STORE]");
    fails_with(&job("forget.sh", &["missing.csv", "s"], d, &[]), 2, "forget: request file missing.csv not found");
    fails_with(&job("nightly.sh", &["s"], d, &[("EEMU_BIN", "/no/eemu")]), 1, "nightly: /no/eemu not found");

    // Another job holds the lock: both scripts refuse with 75 and leave the store alone.
    let mut holder = Command::new("bash")
        .args(["-c", "exec 9>s/.job.lock; flock 9; touch held; exec sleep 60"])
        .current_dir(d)
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !d.join("held").exists() {
        assert!(start.elapsed() < Duration::from_secs(20), "the lock holder did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let locked_n = job("nightly.sh", &["s"], d, &[]);
    let locked_f = job("forget.sh", &["delete.csv", "s"], d, &[]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    fails_with(&locked_n, 75, "nightly: another eemu job is running on s");
    fails_with(&locked_f, 75, "forget: another eemu job is running on s");
    assert!(!d.join("s/runs").exists(), "a refused job wrote a run");

    // The lock is free again: nightly writes a run; a deferred deletion is recorded, not applied,
    // and the next nightly applies it (EEMU_STORE names the store instead of the argument).
    let o = job("nightly.sh", &["s"], d, &[]);
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(d.join("s/runs/LATEST").is_file());
    let o = job("forget.sh", &["delete.csv", "s"], d, &[("EEMU_DEFER", "1")]);
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("deferred"), "{out}\n{err}");
    assert!(err.contains("forget --requests delete.csv --store s --device cpu --defer"), "{err}");
    let o = job("nightly.sh", &[], d, &[("EEMU_STORE", "s"), ("EEMU_CONFIG", "tiny.toml")]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("applied ledger entry 1:") && out.contains("1 user(s) removed"), "{out}");
    assert!(err.contains("--config tiny.toml nightly --store s"), "{err}");
    ok(eemu(&["verify", "--store", "s"], d));
}
