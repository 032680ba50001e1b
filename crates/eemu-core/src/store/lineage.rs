//! Lineage hashes. A shard's lineage hash is SHA-256 over everything its training may read:
//! the training identity (seed, shard, model and training settings), the shard index, the item
//! catalog, the shard's rows in canonical order (original ids, time, weight, query flag) and the
//! features of the users that occur in them. Rows of other shards never enter it, so a changed
//! row changes exactly one shard's hash. Each user of the shard also contributes the item of
//! their validation row (training excludes it from negatives and logs a validation metric), so
//! deleting a validation row changes the hash of every shard that holds that user.
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::config::{hex, Config};
use crate::data::shard::ShardPlan;
use crate::data::split::{user_runs, Split};
use crate::data::Dataset;

/// Per-shard summary computed with the lineage hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLineage {
    pub index: usize,
    pub rows: usize,
    pub users: usize,
    pub query_rows: usize,
    pub lineage: String,
}

/// Row indices of each shard, in canonical lineage order: by (user, item, time, weight, row).
pub fn shard_rows(dataset: &Dataset, plan: &ShardPlan, count: usize) -> Vec<Vec<usize>> {
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); count];
    for (r, s) in plan.shard.iter().enumerate() {
        if let Some(s) = s {
            rows[*s as usize].push(r);
        }
    }
    let x = &dataset.interactions;
    for shard in &mut rows {
        shard.sort_by_key(|&r| {
            let t = x.timestamp.as_ref().map_or(0, |t| t[r]);
            let w = x.weight.as_ref().map_or(0, |w| w[r].to_bits());
            (x.user[r], x.item[r], t, w, r)
        });
    }
    rows
}

/// The validation item of every user, if any (rows in canonical order).
pub fn validation_items(dataset: &Dataset, split: &[Split]) -> Vec<Option<u32>> {
    let mut out = vec![None; dataset.users.len()];
    for (user, run) in user_runs(&dataset.interactions.user) {
        out[user as usize] = run.clone().find(|&r| split[r] == Split::Valid).map(|r| dataset.interactions.item[r]);
    }
    out
}

/// The lineage hash and counts of every shard.
pub fn shard_lineages(dataset: &Dataset, split: &[Split], plan: &ShardPlan, config: &Config) -> Vec<ShardLineage> {
    let identity = config.training_identity();
    let validation = validation_items(dataset, split);
    let catalog = dataset.item_catalog_hash();
    let rows = shard_rows(dataset, plan, config.shards.count);
    rows.par_iter()
        .enumerate()
        .map(|(index, rows)| {
            let mut h = Sha256::new();
            h.update(b"eemu-lineage-v1");
            h.update((identity.len() as u64).to_le_bytes());
            h.update(identity.as_bytes());
            h.update((index as u64).to_le_bytes());
            h.update(catalog);
            h.update((rows.len() as u64).to_le_bytes());
            let mut query_rows = 0;
            for &r in rows {
                dataset.hash_row_into(r, &mut h);
                h.update([plan.query[r] as u8]);
                query_rows += plan.query[r] as usize;
            }
            let mut users: Vec<u32> = rows.iter().map(|&r| dataset.interactions.user[r]).collect();
            users.dedup();
            h.update((users.len() as u64).to_le_bytes());
            for &u in &users {
                dataset.users.hash_entity_into(u, &mut h);
                match validation[u as usize] {
                    Some(item) => {
                        h.update([1]);
                        dataset.items.ids.hash_into(item, &mut h);
                    }
                    None => h.update([0]),
                }
            }
            ShardLineage { index, rows: rows.len(), users: users.len(), query_rows, lineage: hex(&h.finalize()) }
        })
        .collect()
}
