//! `eemu status`: a readable report of a store (dataset, features, split, shards with their
//! lineage hashes and training state, per-user shard coverage), or the same as JSON.
use std::fmt::Write;

use serde::Serialize;

use crate::data::FeatureSchema;
use crate::store::{Manifest, ShardInfo, Store};

/// Training state of one shard lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardState {
    /// A finished model exists for this lineage hash.
    Trained,
    /// No model for this lineage hash yet (new data, or rows changed since training).
    Stale,
}

/// Shard states in manifest order.
pub fn shard_states(store: &Store, manifest: &Manifest) -> Vec<ShardState> {
    manifest.shards.iter().map(|s| if store.is_trained(s) { ShardState::Trained } else { ShardState::Stale }).collect()
}

/// The status as JSON: the manifest plus each shard's state.
pub fn json(store: &Store, manifest: &Manifest) -> serde_json::Value {
    #[derive(Serialize)]
    struct Row<'a> {
        #[serde(flatten)]
        shard: &'a ShardInfo,
        state: ShardState,
    }
    let states = shard_states(store, manifest);
    let shards: Vec<Row> = manifest.shards.iter().zip(states).map(|(shard, state)| Row { shard, state }).collect();
    serde_json::json!({
        "store": store.root().display().to_string(),
        "manifest": manifest,
        "shards": shards,
        "latest_run": latest_run(store).map(|d| d.display().to_string()),
    })
}

fn features(list: &[FeatureSchema]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|f| match f {
            FeatureSchema::Categorical { name, cardinality } => format!("{name} (categorical, {cardinality})"),
            FeatureSchema::MultiHot { name, cardinality } => format!("{name} (multi-hot, {cardinality})"),
            FeatureSchema::Dense { name, dim } => format!("{name} (dense, {dim})"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The status as text.
pub fn text(store: &Store, manifest: &Manifest) -> String {
    let d = &manifest.dataset;
    let c = &manifest.config;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "store         {} (format {}, written by eemu {})",
        store.root().display(),
        manifest.store_format,
        manifest.eemu_version
    );
    let _ = writeln!(s, "dataset       {} ({})", d.id, d.format);
    for src in &d.sources {
        let _ = writeln!(s, "  source      {} ({} bytes, sha256 {})", src.path, src.bytes, &src.sha256[..16]);
    }
    let _ = writeln!(
        s,
        "  users       {} ({} with interactions, {} evaluated), {} ids",
        d.users, d.users_with_interactions, d.users_evaluated, d.user_id_type
    );
    let _ = writeln!(s, "  items       {}, {} ids", d.items, d.item_id_type);
    let _ = writeln!(
        s,
        "  interactions {}: train {}, validation {}, test {}; timestamps {}, weights {}",
        d.interactions,
        d.train,
        d.valid,
        d.test,
        if d.has_timestamp { "yes" } else { "no" },
        if d.has_weight { "yes" } else { "no" }
    );
    let _ = writeln!(s, "  user features {}", features(&d.user_features));
    let _ = writeln!(s, "  item features {}", features(&d.item_features));
    let mode = serde_json::to_value(c.split.mode).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let _ = writeln!(
        s,
        "split         {mode} (users with fewer than {} interactions train only)",
        c.split.min_interactions
    );
    let assignment =
        serde_json::to_value(c.shards.assignment).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
    let _ = writeln!(s, "config        hash {} (seed {})", &manifest.config_hash[..16], c.seed);
    let _ =
        writeln!(s, "shards        {} ({assignment} assignment, query size {})", c.shards.count, c.shards.query_size);
    let _ =
        writeln!(s, "  {:>5} {:>9} {:>7} {:>7}  {:<64}  state", "shard", "rows", "users", "queries", "lineage hash");
    for (shard, state) in manifest.shards.iter().zip(shard_states(store, manifest)) {
        let state = match state {
            ShardState::Trained => "trained",
            ShardState::Stale => "stale (no model for this lineage)",
        };
        let _ = writeln!(
            s,
            "  {:>5} {:>9} {:>7} {:>7}  {}  {state}",
            shard.index, shard.rows, shard.users, shard.query_rows, shard.lineage
        );
    }
    let cov = &manifest.coverage;
    let _ = writeln!(s, "coverage      users by number of shards holding their training rows:");
    let parts: Vec<String> = cov
        .users_by_shard_count
        .iter()
        .enumerate()
        .rev()
        .filter(|(_, &n)| n > 0)
        .map(|(k, n)| format!("{k} shards: {n}"))
        .collect();
    let _ = writeln!(s, "              {}", parts.join(", "));
    let _ = writeln!(s, "              (user, shard) slices without a query row: {}", cov.slices_without_query);
    match latest_run(store) {
        Some(dir) => {
            let _ = writeln!(s, "latest run    {}", dir.join("recommendations.parquet").display());
        }
        None => {
            let _ = writeln!(s, "latest run    none (`eemu nightly` trains and writes one)");
        }
    }
    match crate::forget::Ledger::load(store) {
        Ok(ledger) if !ledger.entries.is_empty() => {
            let pending = ledger.pending(manifest.ledger_applied).count();
            let _ = writeln!(
                s,
                "deletions     {} ledger entr{} applied, {pending} pending{}",
                ledger.entries.len() - pending,
                if ledger.entries.len() - pending == 1 { "y" } else { "ies" },
                if pending > 0 { " (`eemu nightly` applies them)" } else { "" }
            );
        }
        Ok(_) => {}
        Err(e) => {
            let _ = writeln!(s, "deletions     ledger unreadable: {e:#}");
        }
    }
    s
}

/// The folder of the run `runs/LATEST` names, when it is complete.
pub fn latest_run(store: &Store) -> Option<std::path::PathBuf> {
    let runs = store.root().join("runs");
    let id = std::fs::read_to_string(runs.join("LATEST")).ok()?;
    let dir = runs.join(id.trim());
    dir.join("_SUCCESS").is_file().then_some(dir)
}
