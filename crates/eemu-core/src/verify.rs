//! `eemu verify`: proves that every stored artifact derives from data that is still present.
//!
//! It recomputes every shard's lineage hash and the dataset id from the dataset files, then
//! checks every file of the store against them:
//! - `manifest.json` names those hashes;
//! - `datasets/` holds only the current dataset;
//! - `shards/<i>/` holds only the current lineage folder of shard i, whose training log (when
//!   trained) names that lineage, and whose cached labels cover exactly the shard's users;
//! - every run under `runs/` is complete and was computed from the current dataset, the current
//!   lineages and the current model files; no unfinished run folder is left; `runs/LATEST`
//!   names a complete run;
//! - the deletion ledger has no pending entry, and no applied entry still holds its requests;
//! - `reports/` holds only unlearning reports.
//!
//! It also groups the trained shards by the device and CPU kernel caps their training logs
//! record (not a finding: a shard's bytes are reproducible under its own setting).
//!
//! Needs no libtorch: model files are compared by their SHA-256.
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::store::files::sha256_file;
use crate::store::{lineage, list_dir, Store, MODEL_FILE};

/// One artifact that does not match the current data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Path relative to the store.
    pub path: String,
    pub problem: String,
}

/// What `verify` checked and found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dataset: String,
    /// Current lineage hash of every shard, recomputed from the dataset files.
    pub lineages: Vec<String>,
    /// Files and folders checked.
    pub checked: usize,
    pub findings: Vec<Finding>,
    /// The trained shards of each training setting (device and, on the CPU, kernel caps and CPU
    /// model, as their training logs record them). A from-scratch retraining gives a shard's bytes only
    /// under the setting it was trained under.
    pub training: Vec<TrainingSetting>,
}

/// Shards trained under one device, kernel setting and CPU model.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct TrainingSetting {
    pub device: String,
    /// `cpu_kernels` of the training logs; None on CUDA and in logs written before it existed.
    pub cpu_kernels: Option<String>,
    /// `cpu` of the training logs (model and widest vector extension); None on CUDA and in logs
    /// written before it existed.
    pub cpu: Option<String>,
    pub shards: Vec<usize>,
    /// Whether training again under this setting gives the same model bytes: on the CPU yes
    /// (tested); on CUDA no, two trainings of one shard can differ (docs/results.md, "CUDA
    /// determinism"); on a device the log does not record, not known.
    pub bytes_reproducible: bool,
}

/// Whether a shard trained on `device` (as its training log records it, e.g. "Cpu" or
/// "Cuda(0)") gets the same model bytes when trained again under the same setting.
pub fn bytes_reproducible(device: &str) -> bool {
    device == "Cpu"
}

impl Report {
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut s = format!(
            "dataset {}: {} shard lineage(s) recomputed, {} file(s) and folder(s) checked\n",
            self.dataset,
            self.lineages.len(),
            self.checked
        );
        for t in &self.training {
            let shards: Vec<String> = t.shards.iter().map(usize::to_string).collect();
            let kernels = t.cpu_kernels.as_deref().map(|k| format!(", kernels {k}")).unwrap_or_default();
            let cpu = t.cpu.as_deref().map(|c| format!(", CPU {c}")).unwrap_or_default();
            s.push_str(&format!("shard(s) {} trained on {}{kernels}{cpu}\n", shards.join(","), t.device));
        }
        let unreproducible: Vec<String> = self
            .training
            .iter()
            .filter(|t| !t.bytes_reproducible)
            .flat_map(|t| t.shards.iter().map(usize::to_string))
            .collect();
        if !unreproducible.is_empty() {
            s.push_str(&format!(
                "note: shard(s) {} were not trained on the CPU, and training on CUDA is not reproducible run to run: \
                 a from-scratch retraining gives other model bytes, so that they depend on no deleted row rests on \
                 their lineage hashes, checked here\n",
                unreproducible.join(",")
            ));
        }
        if self.training.len() > 1 {
            s.push_str(&format!(
                "note: {} training settings; a from-scratch retraining reproduces a shard's model file only under \
                 its own\n",
                self.training.len()
            ));
        }
        if self.ok() {
            s.push_str("ok: every stored artifact derives from the current data\n");
        } else {
            s.push_str(&format!("{} problem(s):\n", self.findings.len()));
            for f in &self.findings {
                s.push_str(&format!("  {}: {}\n", f.path, f.problem));
            }
        }
        s
    }
}

struct Check<'a> {
    root: &'a Path,
    checked: usize,
    findings: Vec<Finding>,
}

impl Check<'_> {
    fn bad(&mut self, path: &Path, problem: impl Into<String>) {
        let rel = path.strip_prefix(self.root).unwrap_or(path);
        self.findings.push(Finding { path: rel.display().to_string(), problem: problem.into() });
    }
}

fn name(path: &Path) -> String {
    path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
}

/// Why a complete run does not derive from the current data (empty when it does): its dataset,
/// the lineage of each shard (`lineages[i]` is shard i's current one) and the model file hashes
/// (`models[i]` of shard i's current model) must all be the current ones.
pub fn run_problems(
    run: &Path,
    dataset: &str,
    lineages: &[&str],
    models: &BTreeMap<usize, String>,
) -> Result<Vec<String>> {
    let m = read_json(&run.join(crate::output::MANIFEST_FILE))?;
    let mut problems = Vec::new();
    if m["dataset"].as_str() != Some(dataset) {
        problems.push(format!("computed from dataset {}, not the current one", m["dataset"]));
    }
    for s in m["shards"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let index = s["index"].as_u64().unwrap_or(u64::MAX) as usize;
        let lineage = s["lineage"].as_str().unwrap_or_default();
        if lineages.get(index) != Some(&lineage) {
            problems.push(format!("uses superseded lineage {lineage} of shard {index}"));
        } else if models.get(&index).map(String::as_str) != s["model_sha256"].as_str() {
            problems.push(format!("uses a model of shard {index} that is no longer stored"));
        }
    }
    if m["shards"].as_array().map_or(0, Vec::len) != lineages.len() {
        problems.push("does not cover every current shard".into());
    }
    Ok(problems)
}

/// Deletes the complete runs under `runs_dir` that do not derive from the current data (see
/// [`run_problems`]), except the `keep` most recent of them. Returns the deleted folders.
pub fn purge_superseded_runs(
    runs_dir: &Path,
    dataset: &str,
    lineages: &[&str],
    models: &BTreeMap<usize, String>,
    keep: usize,
) -> Result<Vec<std::path::PathBuf>> {
    let mut superseded = Vec::new();
    for run in list_dir(runs_dir)? {
        let n = name(&run);
        if n == "LATEST" || n.starts_with('.') || !run.join(crate::output::SUCCESS_FILE).is_file() {
            continue;
        }
        if !run_problems(&run, dataset, lineages, models)?.is_empty() {
            let modified = fs::metadata(&run).and_then(|m| m.modified()).ok();
            superseded.push((modified, run));
        }
    }
    // Newest first; the first `keep` stay.
    superseded.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let mut removed = Vec::new();
    for (_, run) in superseded.into_iter().skip(keep) {
        fs::remove_dir_all(&run).with_context(|| format!("cannot remove superseded run {}", run.display()))?;
        removed.push(run);
    }
    if !removed.is_empty() {
        crate::store::files::sync_dir(runs_dir)?;
    }
    Ok(removed)
}

/// Checks the store; a problem with an artifact is a finding, an unreadable dataset an error.
pub fn verify(store: &Store) -> Result<Report> {
    let (manifest, p) = store.load()?;
    let root = store.root();
    let mut c = Check { root, checked: 0, findings: Vec::new() };

    let recomputed = lineage::shard_lineages(&p.dataset, &p.split, &p.plan, &p.config);
    let dataset_id = crate::store::dataset_id(&p.dataset, &p.split, &p.plan, &recomputed);
    c.checked += 1;
    if dataset_id != manifest.dataset.id {
        c.bad(
            &store.manifest_path(),
            format!("names dataset {}, the dataset files hash to {dataset_id}", manifest.dataset.id),
        );
    }
    for (shard, l) in manifest.shards.iter().zip(&recomputed) {
        if shard.lineage != l.lineage {
            c.bad(
                &store.manifest_path(),
                format!("shard {}: lineage {} in the manifest, {} recomputed", shard.index, shard.lineage, l.lineage),
            );
        }
    }
    let current: Vec<&str> = recomputed.iter().map(|l| l.lineage.as_str()).collect();

    for dir in list_dir(&root.join("datasets"))? {
        c.checked += 1;
        if name(&dir) != manifest.dataset.id {
            c.bad(&dir, "a dataset the manifest does not reference (superseded or unfinished)");
        }
    }

    // Users of each shard, ascending (what its labels must cover).
    let mut shard_users: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); current.len()];
    for (r, s) in p.plan.shard.iter().enumerate() {
        if let Some(s) = s {
            shard_users[*s as usize].insert(p.dataset.interactions.user[r]);
        }
    }
    let mut models: BTreeMap<usize, String> = BTreeMap::new();
    let mut settings: BTreeMap<(String, Option<String>, Option<String>), Vec<usize>> = BTreeMap::new();
    for index_dir in list_dir(&root.join("shards"))? {
        c.checked += 1;
        let Some(index) = name(&index_dir).parse::<usize>().ok().filter(|&i| i < current.len()) else {
            c.bad(&index_dir, "not a shard of this store");
            continue;
        };
        for lineage_dir in list_dir(&index_dir)? {
            c.checked += 1;
            if name(&lineage_dir) != current[index] {
                c.bad(&lineage_dir, format!("superseded lineage of shard {index} (current: {})", current[index]));
                continue;
            }
            for file in list_dir(&lineage_dir)? {
                c.checked += 1;
                let n = name(&file);
                if n == MODEL_FILE {
                    models.insert(index, sha256_file(&file)?);
                } else if n == "train-log.json" {
                    let log = read_json(&file)?;
                    if log["lineage"].as_str() != Some(current[index]) {
                        c.bad(&file, format!("training log of lineage {}", log["lineage"]));
                    }
                    let device = log["device"].as_str().unwrap_or("an unrecorded device").to_string();
                    let kernels = log["cpu_kernels"].as_str().map(str::to_string);
                    let cpu = log["cpu"].as_str().map(str::to_string);
                    settings.entry((device, kernels, cpu)).or_default().push(index);
                } else if n.starts_with("labels-") && n.ends_with(".parquet") {
                    let (users, _) = crate::cluster::read_labels_file(&file)?;
                    if !users.iter().copied().eq(shard_users[index].iter().copied()) {
                        c.bad(&file, "labels of other users than the shard's");
                    }
                } else if n != "lineage.json" {
                    c.bad(&file, "unexpected file (unfinished write?)");
                }
            }
            if lineage_dir.join("train-log.json").is_file() != lineage_dir.join(MODEL_FILE).is_file() {
                c.bad(&lineage_dir, "a model without its training log, or the reverse");
            }
        }
    }

    let runs = root.join("runs");
    let mut complete = BTreeSet::new();
    for run in list_dir(&runs)? {
        c.checked += 1;
        let n = name(&run);
        if n == "LATEST" {
            continue;
        }
        if n.starts_with('.') {
            c.bad(&run, "unfinished run (a killed job's temporary folder)");
            continue;
        }
        if !run.join(crate::output::SUCCESS_FILE).is_file() {
            c.bad(&run, "run without _SUCCESS");
            continue;
        }
        let problems = run_problems(&run, &manifest.dataset.id, &current, &models)?;
        if problems.is_empty() {
            complete.insert(n);
        } else {
            c.bad(&run, problems.join("; "));
        }
    }
    let latest = runs.join("LATEST");
    if latest.is_file() {
        c.checked += 1;
        let id = fs::read_to_string(&latest).with_context(|| format!("cannot read {}", latest.display()))?;
        if !complete.contains(id.trim()) {
            c.bad(&latest, format!("names run {}, which is not a complete run of the current data", id.trim()));
        }
    }
    let ledger = crate::forget::Ledger::load(store)?;
    let ledger_path = crate::forget::ledger_path(store);
    for e in &ledger.entries {
        c.checked += 1;
        if e.seq > manifest.ledger_applied {
            c.bad(
                &ledger_path,
                format!(
                    "entry {} ({} deletion request(s)) is not applied yet: run `eemu nightly` or `eemu forget`",
                    e.seq, e.requests
                ),
            );
        } else if e.state != crate::forget::State::Applied || !e.pending.is_empty() {
            c.bad(
                &ledger_path,
                format!(
                    "entry {} is applied but still holds its requests (an interrupted forget: run it again)",
                    e.seq
                ),
            );
        }
    }
    for file in list_dir(&root.join(crate::forget::REPORTS_DIR))? {
        c.checked += 1;
        let n = name(&file);
        if !(n.starts_with("unlearning-") && (n.ends_with(".json") || n.ends_with(".txt"))) {
            c.bad(&file, "unexpected file (unfinished write?)");
        }
    }
    Ok(Report {
        dataset: dataset_id,
        lineages: current.iter().map(|s| s.to_string()).collect(),
        checked: c.checked,
        findings: c.findings,
        training: settings
            .into_iter()
            .map(|((device, cpu_kernels, cpu), shards)| TrainingSetting {
                bytes_reproducible: bytes_reproducible(&device),
                device,
                cpu_kernels,
                cpu,
                shards,
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(device: &str, shards: Vec<usize>) -> TrainingSetting {
        let cpu = device == "Cpu";
        TrainingSetting {
            device: device.to_string(),
            cpu_kernels: cpu.then(|| "MKL_CBWR=AVX2".to_string()),
            cpu: cpu.then(|| "AMD EPYC (avx512f)".to_string()),
            shards,
            bytes_reproducible: bytes_reproducible(device),
        }
    }

    fn report(training: Vec<TrainingSetting>) -> Report {
        Report { dataset: "d".to_string(), lineages: vec![], checked: 0, findings: vec![], training }
    }

    #[test]
    fn only_cpu_training_counts_as_byte_reproducible() {
        assert!(bytes_reproducible("Cpu"));
        assert!(!bytes_reproducible("Cuda(0)"));
        assert!(!bytes_reproducible("an unrecorded device"));
    }

    #[test]
    fn shards_trained_on_cuda_are_named_as_not_byte_reproducible() {
        let text = report(vec![setting("Cpu", vec![0, 2]), setting("Cuda(0)", vec![1, 3])]).text();
        assert!(text.contains("shard(s) 1,3 trained on Cuda(0)\n"), "{text}");
        let note = text.lines().find(|l| l.contains("not reproducible run to run")).unwrap_or_else(|| panic!("{text}"));
        assert!(note.starts_with("note: shard(s) 1,3 were not trained on the CPU"), "{note}");
        assert!(text.contains("note: 2 training settings"), "{text}");
        assert!(text.ends_with("ok: every stored artifact derives from the current data\n"), "{text}");

        let text = report(vec![setting("Cpu", vec![0, 1, 2, 3])]).text();
        assert!(!text.contains("note:"), "{text}");
    }
}
