//! Deletion requests: the request file, the durable deletion ledger, and applying pending
//! requests to the store's dataset.
//!
//! A request deletes one interaction (`user_id`, `item_id`) or a whole user (`user_id` alone:
//! every interaction and the user's features). The life of a batch:
//!
//! 1. **submit**: the request file is read and validated, then appended to `STORE/ledger.json`
//!    (written atomically: temporary file, fsync, rename, fsync of the folder) as a *pending*
//!    entry. Nothing else changes. The same file (same SHA-256) is never appended twice.
//! 2. **apply** (every pending entry at once): the rows are removed from the dataset, which is
//!    then split, sharded and hashed exactly as `eemu ingest` would do for data that never held
//!    them. The entries' outcome is written to the ledger (*applying*), then the new dataset and
//!    manifest are published: `manifest.ledger_applied` is the commit point. Old dataset files
//!    and the lineage folders of changed shards (models, training logs, cached labels) are
//!    deleted. Last the entries are *applied*: their request rows (which name deleted data) are
//!    removed from the ledger, keeping counts, request ids and file positions.
//!
//! A crash anywhere is repaired by the next `forget` or `nightly`: an entry the manifest counts
//! as applied is only redacted, any other is applied again from the current dataset (the same
//! result, since nothing was published).
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::data::split::user_runs;
use crate::data::table::Table;
use crate::data::{Dataset, Ids};
use crate::error::{EemuError, Location};
use crate::fault;
use crate::store::files::{sha256_file, write_atomic};
use crate::store::{Prepared, Store};

/// The deletion ledger, at the store's root.
pub const LEDGER_FILE: &str = "ledger.json";
/// Unlearning reports (`unlearning-<seq>.json` and `.txt`), at the store's root.
pub const REPORTS_DIR: &str = "reports";
/// Version of the ledger's layout.
pub const LEDGER_FORMAT: u32 = 1;

/// One deletion request, as read from the request file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Where it sits in the request file (`file:line` for CSV, `file row n` for Parquet).
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub user_id: String,
    /// `None`: delete the user (every interaction and the user's features).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
}

/// Reads a request file (CSV with a header, or Parquet): column `user_id`, optional `item_id`
/// (an empty or null cell deletes the whole user) and optional `request_id`.
pub fn read_requests(path: &Path, delimiter: u8) -> Result<Vec<Request>> {
    let names = Table::column_names(path, delimiter)?;
    let has = |c: &str| names.iter().any(|n| n == c);
    let file = path.display().to_string();
    if !has("user_id") {
        return Err(EemuError::input(
            &file,
            Location::File,
            Some("user_id"),
            format!(
                "missing; a request file has column user_id and optional item_id, request_id (found: {})",
                names.join(", ")
            ),
        )
        .into());
    }
    let mut columns = vec!["user_id"];
    columns.extend(["item_id", "request_id"].into_iter().filter(|c| has(c)));
    let table = Table::read(path, &columns, delimiter)?;
    let users = table.labels("user_id")?;
    let items = if has("item_id") { Some(table.labels("item_id")?) } else { None };
    let ids = if has("request_id") { Some(table.labels("request_id")?) } else { None };
    let mut out = Vec::with_capacity(users.len());
    for (row, user) in users.into_iter().enumerate() {
        if user.is_empty() {
            return Err(table.error(row, "user_id", "empty: every request names a user"));
        }
        let nonempty = |v: &Option<Vec<String>>| v.as_ref().map(|v| v[row].clone()).filter(|s| !s.is_empty());
        out.push(Request { at: table.at(row), request_id: nonempty(&ids), user_id: user, item_id: nonempty(&items) });
    }
    Ok(out)
}

/// Where an entry is in its life (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Applying,
    Applied,
}

/// What applying one request did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestOutcome {
    pub at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `interaction` or `user`.
    pub kind: String,
    /// False when the user (or the interaction) is not in the dataset: unknown, or deleted before.
    pub found: bool,
    /// Rows this request removed (0 when an earlier request of the batch removed them).
    pub rows_removed: usize,
}

/// A shard's lineage before and after an application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardChange {
    pub index: usize,
    pub lineage_before: String,
    pub lineage_after: String,
    pub rows_before: usize,
    pub rows_after: usize,
}

/// What applying an entry did (entries applied together share dataset and shard changes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub applied_unix: u64,
    pub rows_removed: usize,
    pub users_removed: usize,
    pub requests: Vec<RequestOutcome>,
    pub dataset_before: String,
    pub dataset_after: String,
    pub shards: Vec<ShardChange>,
}

/// One submitted request file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub received_unix: u64,
    pub source: String,
    pub source_sha256: String,
    pub requests: usize,
    pub state: State,
    /// The requests, while pending or applying; emptied once applied (they name deleted data).
    #[serde(default)]
    pub pending: Vec<Request>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The report (under `reports/`) that covers this entry, once written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
}

/// `ledger.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub format: u32,
    pub entries: Vec<Entry>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn ledger_path(store: &Store) -> PathBuf {
    store.root().join(LEDGER_FILE)
}

impl Ledger {
    /// The store's ledger (empty when none was written yet).
    pub fn load(store: &Store) -> Result<Ledger> {
        let path = ledger_path(store);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let ledger: Ledger =
                    serde_json::from_str(&text).with_context(|| format!("{} is not a valid ledger", path.display()))?;
                if ledger.format != LEDGER_FORMAT {
                    bail!("{}: ledger format {} is not supported", path.display(), ledger.format);
                }
                Ok(ledger)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Ledger { format: LEDGER_FORMAT, entries: vec![] }),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the ledger durably (atomic replace, fsync of file and folder).
    pub fn save(&self, store: &Store) -> Result<()> {
        write_atomic(&ledger_path(store), (serde_json::to_string_pretty(self)? + "\n").as_bytes())
    }

    /// Entries not yet applied to the dataset of a manifest whose mark is `applied`.
    pub fn pending(&self, applied: u64) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(move |e| e.seq > applied)
    }
}

/// What `submit` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub seq: u64,
    pub requests: usize,
    /// False when the same file was already in the ledger (nothing appended).
    pub appended: bool,
    pub state: State,
}

/// Validates a request file and appends it durably to the ledger as a pending entry. Nothing
/// else in the store changes.
pub fn submit(store: &Store, path: &Path) -> Result<Submitted> {
    let manifest = store.manifest()?;
    let requests = read_requests(path, manifest.config.ingest.delimiter.as_bytes()[0])?;
    let sha256 = sha256_file(path)?;
    let mut ledger = Ledger::load(store)?;
    if let Some(e) = ledger.entries.iter().find(|e| e.source_sha256 == sha256) {
        return Ok(Submitted { seq: e.seq, requests: e.requests, appended: false, state: e.state });
    }
    let seq = ledger.entries.last().map_or(0, |e| e.seq).max(manifest.ledger_applied) + 1;
    let count = requests.len();
    ledger.entries.push(Entry {
        seq,
        received_unix: now(),
        source: path.display().to_string(),
        source_sha256: sha256,
        requests: count,
        state: State::Pending,
        pending: requests,
        outcome: None,
        report: None,
    });
    ledger.save(store)?;
    info!(seq, requests = count, "requests recorded in the ledger");
    fault::point("ledger-appended");
    Ok(Submitted { seq, requests: count, appended: true, state: State::Pending })
}

/// A request that matched nothing, with its ids (for the command's output only: the ledger and
/// the report keep the position and request id, never the ids).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotFound {
    pub seq: u64,
    pub request: Request,
}

/// What `apply_pending` did.
#[derive(Debug, Clone, Default)]
pub struct Applied {
    /// Entries applied now (their outcome is in the ledger).
    pub entries: Vec<u64>,
    pub rows_removed: usize,
    pub users_removed: usize,
    pub not_found: Vec<NotFound>,
    pub seconds: f64,
}

/// Applies every pending ledger entry to the store's dataset (see the module documentation).
pub fn apply_pending(store: &Store) -> Result<Applied> {
    let start = std::time::Instant::now();
    let manifest = store.manifest()?;
    let mut ledger = Ledger::load(store)?;
    redact_committed(store, &mut ledger, manifest.ledger_applied)?;
    let pending: Vec<Entry> = ledger.pending(manifest.ledger_applied).cloned().collect();
    if pending.is_empty() {
        return Ok(Applied::default());
    }
    let (_, p) = store.load()?;
    let removal = Removal::compute(&p.dataset, &pending);
    if removal.keep_rows.iter().all(|&k| !k) {
        bail!("applying the deletion requests would remove every interaction; the store keeps its dataset");
    }
    let dataset = removal.filtered(&p.dataset);
    let next = Prepared::new(dataset, &p.config);
    let shards: Vec<ShardChange> = p
        .lineages
        .iter()
        .zip(&next.lineages)
        .map(|(a, b)| ShardChange {
            index: a.index,
            lineage_before: a.lineage.clone(),
            lineage_after: b.lineage.clone(),
            rows_before: a.rows,
            rows_after: b.rows,
        })
        .collect();
    let applied_unix = now();
    let last = pending.last().map_or(0, |e| e.seq);
    for e in ledger.entries.iter_mut().filter(|e| e.seq > manifest.ledger_applied) {
        let requests = removal.outcomes.get(&e.seq).cloned().unwrap_or_default();
        e.state = State::Applying;
        e.outcome = Some(Outcome {
            applied_unix,
            rows_removed: requests.iter().map(|r| r.rows_removed).sum(),
            users_removed: removal.users_removed_by.get(&e.seq).copied().unwrap_or(0),
            requests,
            dataset_before: p.id.clone(),
            dataset_after: next.id.clone(),
            shards: shards.clone(),
        });
    }
    ledger.save(store)?;
    fault::point("ledger-applying");
    // Provenance hashes of the original input files cover the deleted rows: they are dropped
    // once anything is deleted.
    let sources =
        if removal.rows_removed() + removal.users_removed() == 0 { manifest.dataset.sources.clone() } else { vec![] };
    store.publish_as(&next, sources, last)?;
    fault::point("dataset-published");
    redact_committed(store, &mut ledger, last)?;
    fault::point("ledger-applied");
    let changed = shards.iter().filter(|s| s.lineage_before != s.lineage_after).count();
    info!(
        entries = pending.len(),
        rows_removed = removal.rows_removed(),
        users_removed = removal.users_removed(),
        shards_changed = changed,
        dataset = %next.id,
        "deletions applied"
    );
    Ok(Applied {
        entries: pending.iter().map(|e| e.seq).collect(),
        rows_removed: removal.rows_removed(),
        users_removed: removal.users_removed(),
        not_found: removal.not_found,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// Marks the entries up to `applied` (committed by the manifest) as applied and drops their
/// request rows from the ledger.
fn redact_committed(store: &Store, ledger: &mut Ledger, applied: u64) -> Result<()> {
    let mut changed = false;
    for e in ledger.entries.iter_mut().filter(|e| e.seq <= applied && e.state != State::Applied) {
        e.state = State::Applied;
        e.pending.clear();
        changed = true;
    }
    if changed {
        ledger.save(store)?;
    }
    Ok(())
}

/// The rows and users a set of entries removes from a dataset.
struct Removal {
    keep_rows: Vec<bool>,
    keep_users: Vec<bool>,
    outcomes: BTreeMap<u64, Vec<RequestOutcome>>,
    users_removed_by: BTreeMap<u64, usize>,
    not_found: Vec<NotFound>,
}

fn find(ids: &Ids, text: &str) -> Option<u32> {
    match ids {
        Ids::Int(_) => text.parse::<i64>().ok().and_then(|v| ids.find_int(v)),
        Ids::Str(_) => ids.find_str(text),
    }
}

impl Removal {
    /// Matches the entries' requests (in ledger order) against the dataset, whose rows are in
    /// canonical order (grouped by user).
    fn compute(d: &Dataset, entries: &[Entry]) -> Removal {
        let x = &d.interactions;
        let runs: HashMap<u32, std::ops::Range<usize>> = user_runs(&x.user).collect();
        let mut keep_rows = vec![true; x.len()];
        let mut keep_users = vec![true; d.users.len()];
        let mut outcomes = BTreeMap::new();
        let mut users_removed_by = BTreeMap::new();
        let mut not_found = Vec::new();
        for e in entries {
            let mut list = Vec::with_capacity(e.pending.len());
            for r in &e.pending {
                let user = find(&d.users.ids, &r.user_id);
                let mut rows_removed = 0;
                let found = match (&r.item_id, user) {
                    (_, None) => false,
                    (None, Some(u)) => {
                        for row in runs.get(&u).cloned().unwrap_or(0..0) {
                            rows_removed += std::mem::replace(&mut keep_rows[row], false) as usize;
                        }
                        if std::mem::replace(&mut keep_users[u as usize], false) {
                            *users_removed_by.entry(e.seq).or_insert(0) += 1;
                        }
                        true
                    }
                    (Some(item), Some(u)) => {
                        let rows: Vec<usize> = match find(&d.items.ids, item) {
                            Some(i) => runs.get(&u).cloned().unwrap_or(0..0).filter(|&row| x.item[row] == i).collect(),
                            None => vec![],
                        };
                        for &row in &rows {
                            rows_removed += std::mem::replace(&mut keep_rows[row], false) as usize;
                        }
                        !rows.is_empty()
                    }
                };
                if !found {
                    not_found.push(NotFound { seq: e.seq, request: r.clone() });
                }
                list.push(RequestOutcome {
                    at: r.at.clone(),
                    request_id: r.request_id.clone(),
                    kind: if r.item_id.is_some() { "interaction" } else { "user" }.into(),
                    found,
                    rows_removed,
                });
            }
            outcomes.insert(e.seq, list);
        }
        Removal { keep_rows, keep_users, outcomes, users_removed_by, not_found }
    }

    fn rows_removed(&self) -> usize {
        self.keep_rows.iter().filter(|&&k| !k).count()
    }

    fn users_removed(&self) -> usize {
        self.keep_users.iter().filter(|&&k| !k).count()
    }

    /// The dataset without the removed rows and users (items are never removed).
    fn filtered(&self, d: &Dataset) -> Dataset {
        let rows: Vec<usize> = (0..self.keep_rows.len()).filter(|&r| self.keep_rows[r]).collect();
        let mut interactions = d.interactions.select(&rows);
        let mut new_index = vec![u32::MAX; d.users.len()];
        let mut next = 0;
        for (u, &keep) in self.keep_users.iter().enumerate() {
            if keep {
                new_index[u] = next;
                next += 1;
            }
        }
        for u in &mut interactions.user {
            *u = new_index[*u as usize];
        }
        Dataset {
            format: d.format.clone(),
            users: d.users.retain(&self.keep_users),
            items: d.items.clone(),
            interactions,
        }
    }
}

/// What the recompute after an application did, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Recompute {
    /// (shard, seconds) of every shard trained by this command.
    pub trained: Vec<(usize, f64)>,
    pub run_id: Option<String>,
    pub runs_deleted: Vec<String>,
    pub seconds_apply: f64,
    pub seconds_train: f64,
    pub seconds_infer: f64,
    pub seconds_total: f64,
}

/// The unlearning report (`reports/unlearning-<seq>.json`; `text` gives the `.txt` summary).
#[derive(Debug, Serialize)]
struct Report {
    report: &'static str,
    eemu_version: &'static str,
    written_unix: u64,
    ledger_entries: Vec<ReportEntry>,
    rows_removed: usize,
    users_removed: usize,
    dataset_before: Option<String>,
    dataset_after: String,
    shards_retrained: Vec<RetrainedShard>,
    shards_reused: Vec<ReusedShard>,
    run: Option<String>,
    superseded_runs_deleted: Vec<String>,
    seconds: ReportSeconds,
    verify: &'static str,
}

#[derive(Debug, Serialize)]
struct ReportEntry {
    seq: u64,
    source: String,
    received_unix: u64,
    applied_unix: Option<u64>,
    requests: usize,
    requests_applied: usize,
    requests_not_found: Vec<RequestOutcome>,
    rows_removed: Option<usize>,
    users_removed: Option<usize>,
    request_ids: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct RetrainedShard {
    shard: usize,
    lineage_before: String,
    lineage_after: String,
    rows_before: usize,
    rows_after: usize,
    train_seconds: Option<f64>,
}

#[derive(Debug, Serialize)]
struct ReusedShard {
    shard: usize,
    lineage: String,
}

#[derive(Debug, Serialize)]
struct ReportSeconds {
    apply: f64,
    train: f64,
    infer: f64,
    total: f64,
}

impl Report {
    fn text(&self) -> String {
        let mut text = format!(
            "unlearning report: ledger entries {}, {} request(s), {} row(s) and {} user(s) removed\n",
            self.ledger_entries.iter().map(|e| e.seq.to_string()).collect::<Vec<_>>().join(", "),
            self.ledger_entries.iter().map(|e| e.requests).sum::<usize>(),
            self.rows_removed,
            self.users_removed
        );
        for nf in self.ledger_entries.iter().flat_map(|e| &e.requests_not_found) {
            text.push_str(&format!(
                "  not found (unknown id or deleted before): {}{}\n",
                nf.at,
                nf.request_id.as_ref().map(|id| format!(" (request {id})")).unwrap_or_default()
            ));
        }
        text.push_str(&format!(
            "dataset {} -> {}\n",
            self.dataset_before.as_deref().unwrap_or("?"),
            self.dataset_after
        ));
        text.push_str(&format!(
            "shards retrained: {} of {}\n",
            self.shards_retrained.len(),
            self.shards_retrained.len() + self.shards_reused.len()
        ));
        for r in &self.shards_retrained {
            text.push_str(&format!(
                "  shard {}: {} -> {} ({} -> {} rows){}\n",
                r.shard,
                r.lineage_before,
                r.lineage_after,
                r.rows_before,
                r.rows_after,
                r.train_seconds.map(|s| format!(", trained in {s:.1} s")).unwrap_or_default()
            ));
        }
        let reused = self.shards_reused.iter().map(|r| r.shard.to_string()).collect::<Vec<_>>().join(", ");
        text.push_str(&format!(
            "shards reused (lineage unchanged, models and cached labels kept): {}\n",
            if reused.is_empty() { "none".into() } else { reused }
        ));
        if let Some(run) = &self.run {
            text.push_str(&format!("new run: {run}\n"));
        }
        for run in &self.superseded_runs_deleted {
            text.push_str(&format!("deleted superseded run: {run}\n"));
        }
        let s = &self.seconds;
        text.push_str(&format!(
            "seconds: apply {:.1}, train {:.1}, infer {:.1}, total {:.1}\n",
            s.apply, s.train, s.infer, s.total
        ));
        text
    }
}

/// Writes the unlearning report of every applied entry not yet covered by one, as
/// `reports/unlearning-<last seq>.json` and `.txt`, and records it in the ledger. Returns the
/// text summary, or `None` when every applied entry is reported already.
pub fn write_report(store: &Store, recompute: &Recompute) -> Result<Option<(PathBuf, String)>> {
    let manifest = store.manifest()?;
    let mut ledger = Ledger::load(store)?;
    let entries: Vec<&Entry> =
        ledger.entries.iter().filter(|e| e.state == State::Applied && e.report.is_none()).collect();
    let Some(last) = entries.last().map(|e| e.seq) else {
        return Ok(None);
    };
    let first_outcome = entries.iter().find_map(|e| e.outcome.as_ref());
    let before: Vec<(String, usize)> = match first_outcome {
        Some(o) => o.shards.iter().map(|s| (s.lineage_before.clone(), s.rows_before)).collect(),
        None => manifest.shards.iter().map(|s| (s.lineage.clone(), s.rows)).collect(),
    };
    let trained: HashMap<usize, f64> = recompute.trained.iter().copied().collect();
    let mut shards_retrained = Vec::new();
    let mut shards_reused = Vec::new();
    for (s, (old, rows_before)) in manifest.shards.iter().zip(before) {
        if old != s.lineage {
            shards_retrained.push(RetrainedShard {
                shard: s.index,
                lineage_before: old,
                lineage_after: s.lineage.clone(),
                rows_before,
                rows_after: s.rows,
                train_seconds: trained.get(&s.index).copied(),
            });
        } else {
            shards_reused.push(ReusedShard { shard: s.index, lineage: s.lineage.clone() });
        }
    }
    let ledger_entries: Vec<ReportEntry> = entries
        .iter()
        .map(|e| {
            let o = e.outcome.as_ref();
            let requests_not_found: Vec<RequestOutcome> =
                o.map(|o| o.requests.iter().filter(|r| !r.found).cloned().collect()).unwrap_or_default();
            ReportEntry {
                seq: e.seq,
                source: e.source.clone(),
                received_unix: e.received_unix,
                applied_unix: o.map(|o| o.applied_unix),
                requests: e.requests,
                requests_applied: e.requests - requests_not_found.len(),
                requests_not_found,
                rows_removed: o.map(|o| o.rows_removed),
                users_removed: o.map(|o| o.users_removed),
                request_ids: o.map(|o| o.requests.iter().filter_map(|r| r.request_id.clone()).collect()),
            }
        })
        .collect();
    let outcomes = || entries.iter().filter_map(|e| e.outcome.as_ref());
    let report = Report {
        report: "eemu unlearning report",
        eemu_version: env!("CARGO_PKG_VERSION"),
        written_unix: now(),
        ledger_entries,
        rows_removed: outcomes().map(|o| o.rows_removed).sum(),
        users_removed: outcomes().map(|o| o.users_removed).sum(),
        dataset_before: first_outcome.map(|o| o.dataset_before.clone()),
        dataset_after: manifest.dataset.id.clone(),
        shards_retrained,
        shards_reused,
        run: recompute.run_id.clone(),
        superseded_runs_deleted: recompute.runs_deleted.clone(),
        seconds: ReportSeconds {
            apply: recompute.seconds_apply,
            train: recompute.seconds_train,
            infer: recompute.seconds_infer,
            total: recompute.seconds_total,
        },
        verify: "run `eemu verify --store <store>`: it recomputes every lineage hash from the dataset files and checks every stored artifact",
    };
    let text = report.text();
    let dir = store.root().join(REPORTS_DIR);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = format!("unlearning-{last}");
    write_atomic(&dir.join(format!("{name}.txt")), text.as_bytes())?;
    let json_path = dir.join(format!("{name}.json"));
    write_atomic(&json_path, (serde_json::to_string_pretty(&report)? + "\n").as_bytes())?;
    fault::point("report-written");
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    for e in ledger.entries.iter_mut().filter(|e| seqs.contains(&e.seq)) {
        e.report = Some(format!("{name}.json"));
    }
    ledger.save(store)?;
    Ok(Some((json_path, text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_files_read_csv_with_optional_columns_and_name_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.csv");
        std::fs::write(&p, "request_id,user_id,item_id\nR1,7,12\nR2,8,\n,9,3\n").unwrap();
        let r = read_requests(&p, b',').unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(
            r[0],
            Request {
                at: format!("{}:2", p.display()),
                request_id: Some("R1".into()),
                user_id: "7".into(),
                item_id: Some("12".into())
            }
        );
        assert_eq!(r[1].item_id, None);
        assert_eq!(r[2].request_id, None);

        std::fs::write(&p, "user_id\n7\n\n").unwrap();
        assert_eq!(read_requests(&p, b',').unwrap().len(), 1);
        std::fs::write(&p, "user_id,item_id\n7,1\n,2\n").unwrap();
        let e = read_requests(&p, b',').unwrap_err().to_string();
        assert!(e.contains(":3") && e.contains("user_id") && e.contains("empty"), "{e}");
        std::fs::write(&p, "user,item\n7,1\n").unwrap();
        let e = read_requests(&p, b',').unwrap_err().to_string();
        assert!(e.contains("user_id") && e.contains("found: user, item"), "{e}");
    }

    #[test]
    fn request_files_read_parquet_with_integer_ids_and_null_items() {
        use arrow::array::{Int64Array, RecordBatch};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.parquet");
        let batch = RecordBatch::try_from_iter([
            ("user_id", Arc::new(Int64Array::from(vec![7, 8])) as _),
            ("item_id", Arc::new(Int64Array::from(vec![Some(12), None])) as _),
        ])
        .unwrap();
        crate::store::files::write_parquet_atomic(&p, &batch).unwrap();
        let r = read_requests(&p, b',').unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].user_id.as_str(), r[0].item_id.as_deref()), ("7", Some("12")));
        assert_eq!((r[1].user_id.as_str(), r[1].item_id.as_deref(), r[1].request_id.as_deref()), ("8", None, None));
        assert_eq!(r[1].at, format!("{} row 1", p.display()));
    }
}
