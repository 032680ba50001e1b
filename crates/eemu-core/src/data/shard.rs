//! Shard assignment and support/query slicing of the training rows.
//!
//! `hash` assignment: a row's shard is `SHA-256(salt, user id, item id, timestamp) mod S`, a
//! function of the row alone, so deleting any set of rows never moves another row. `balanced`
//! deals each user's rows round-robin in keyed-hash order from a per-user offset: every user is
//! spread evenly, but a deletion can move that user's remaining rows (weaker for exactness).
//!
//! Within each (user, shard) slice the rows are ordered by a second keyed hash; the last
//! `query_size` rows form the query set and the rest the support set. A slice with no more than
//! `query_size` rows has no query rows (all support). Both depend only on the slice's own rows.
use sha2::{Digest, Sha256};

use super::split::{user_runs, Split};
use super::Dataset;
use crate::config::{ShardAssignment, ShardConfig};

/// Shard and query flag of every row (in the dataset's row order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// `None` for validation and test rows.
    pub shard: Vec<Option<u16>>,
    /// True for query rows of a (user, shard) slice.
    pub query: Vec<bool>,
}

/// The two 64-bit keys of a row: which shard (`hash` mode) and its order within a slice.
fn row_keys(dataset: &Dataset, r: usize, salt: &[u8]) -> (u64, u64) {
    let x = &dataset.interactions;
    let mut h = Sha256::new();
    h.update(b"eemu-shard-v1");
    h.update((salt.len() as u64).to_le_bytes());
    h.update(salt);
    dataset.users.ids.hash_into(x.user[r], &mut h);
    dataset.items.ids.hash_into(x.item[r], &mut h);
    match &x.timestamp {
        Some(t) => h.update(t[r].to_le_bytes()),
        None => h.update(b"no-time"),
    }
    let d = h.finalize();
    (
        u64::from_le_bytes(d[0..8].try_into().expect("8 bytes")),
        u64::from_le_bytes(d[8..16].try_into().expect("8 bytes")),
    )
}

fn user_offset(dataset: &Dataset, user: u32, salt: &[u8], count: usize) -> usize {
    let mut h = Sha256::new();
    h.update(b"eemu-balanced-v1");
    h.update((salt.len() as u64).to_le_bytes());
    h.update(salt);
    dataset.users.ids.hash_into(user, &mut h);
    let d = h.finalize();
    (u64::from_le_bytes(d[0..8].try_into().expect("8 bytes")) % count as u64) as usize
}

/// Assigns shards to the training rows and slices each (user, shard) into support and query.
/// Rows must be in canonical order (grouped by user).
pub fn assign(dataset: &Dataset, split: &[Split], config: &ShardConfig, salt: &[u8]) -> ShardPlan {
    let n = dataset.interactions.len();
    let count = config.count as u64;
    let keys: Vec<(u64, u64)> = (0..n).map(|r| row_keys(dataset, r, salt)).collect();
    let mut shard: Vec<Option<u16>> = vec![None; n];
    let mut query = vec![false; n];
    for (user, run) in user_runs(&dataset.interactions.user) {
        let mut train: Vec<usize> = run.filter(|&r| split[r] == Split::Train).collect();
        match config.assignment {
            ShardAssignment::Hash => {
                for &r in &train {
                    shard[r] = Some((keys[r].0 % count) as u16);
                }
            }
            ShardAssignment::Balanced => {
                let offset = user_offset(dataset, user, salt, config.count);
                train.sort_by_key(|&r| (keys[r].1, r));
                for (rank, &r) in train.iter().enumerate() {
                    shard[r] = Some(((offset + rank) % config.count) as u16);
                }
            }
        }
        let mut slices: Vec<Vec<usize>> = vec![Vec::new(); config.count];
        for &r in &train {
            slices[shard[r].expect("training rows have a shard") as usize].push(r);
        }
        for slice in &mut slices {
            if slice.len() > config.query_size {
                slice.sort_by_key(|&r| (keys[r].1, r));
                for &r in &slice[slice.len() - config.query_size..] {
                    query[r] = true;
                }
            }
        }
    }
    ShardPlan { shard, query }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Entities, Ids, Interactions};
    use proptest::prelude::*;

    fn dataset(rows: &[(i64, i64, i64)]) -> Dataset {
        let ids = |f: fn(&(i64, i64, i64)) -> i64| Ids::from_int(rows.iter().map(f).collect());
        let users = ids(|r| r.0);
        let items = ids(|r| r.1);
        let mut sorted = rows.to_vec();
        sorted.sort_by_key(|r| (r.0, r.2));
        let interactions = Interactions {
            user: sorted.iter().map(|r| users.find_int(r.0).unwrap()).collect(),
            item: sorted.iter().map(|r| items.find_int(r.1).unwrap()).collect(),
            timestamp: Some(sorted.iter().map(|r| r.2).collect()),
            weight: None,
        };
        Dataset {
            format: "test".into(),
            users: Entities { ids: users, features: vec![] },
            items: Entities { ids: items, features: vec![] },
            interactions,
        }
    }

    /// (user, item, time) -> shard of every training row.
    fn shards_by_row(d: &Dataset, config: &ShardConfig) -> Vec<((String, String, i64), u16)> {
        let split = vec![Split::Train; d.interactions.len()];
        let plan = assign(d, &split, config, b"salt");
        let x = &d.interactions;
        (0..x.len())
            .map(|r| {
                let key =
                    (d.users.ids.display(x.user[r]), d.items.ids.display(x.item[r]), x.timestamp.as_ref().unwrap()[r]);
                (key, plan.shard[r].unwrap())
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn deleting_rows_never_moves_another_row(
            rows in prop::collection::btree_set((0i64..30, 0i64..50, 0i64..1000), 1..200),
            keep in prop::collection::vec(any::<bool>(), 200),
        ) {
            let rows: Vec<_> = rows.into_iter().collect();
            let config = ShardConfig { count: 8, ..ShardConfig::default() };
            let before = shards_by_row(&dataset(&rows), &config);
            let kept: Vec<_> = rows.iter().zip(&keep).filter(|(_, &k)| k).map(|(r, _)| *r).collect();
            prop_assume!(!kept.is_empty());
            let after = shards_by_row(&dataset(&kept), &config);
            for (key, shard) in after {
                let old = before.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
                prop_assert_eq!(old, Some(shard), "row {:?} moved", key);
            }
        }
    }

    #[test]
    fn hash_assignment_spreads_rows_over_all_shards() {
        let rows: Vec<_> = (0..4000).map(|i| (i % 50, i / 50, i)).collect();
        let d = dataset(&rows);
        let split = vec![Split::Train; rows.len()];
        let plan = assign(&d, &split, &ShardConfig::default(), b"k");
        let mut counts = [0usize; 8];
        for s in plan.shard.iter().flatten() {
            counts[*s as usize] += 1;
        }
        // 4000 rows over 8 shards: 500 expected each, a binomial sd of ~21.
        assert!(counts.iter().all(|&c| (400..600).contains(&c)), "{counts:?}");
    }

    #[test]
    fn the_salt_changes_the_assignment() {
        let rows: Vec<_> = (0..200).map(|i| (i % 5, i, i)).collect();
        let d = dataset(&rows);
        let split = vec![Split::Train; rows.len()];
        let a = assign(&d, &split, &ShardConfig::default(), b"one");
        let b = assign(&d, &split, &ShardConfig::default(), b"two");
        assert_ne!(a.shard, b.shard);
    }

    #[test]
    fn balanced_assignment_spreads_each_user_evenly() {
        let rows: Vec<_> = (0..3).flat_map(|u| (0..21).map(move |i| (u, i, i))).collect();
        let d = dataset(&rows);
        let split = vec![Split::Train; rows.len()];
        let config = ShardConfig { assignment: ShardAssignment::Balanced, ..ShardConfig::default() };
        let plan = assign(&d, &split, &config, b"k");
        for u in 0..3u32 {
            let mut counts = [0usize; 8];
            for r in (0..rows.len()).filter(|&r| d.interactions.user[r] == u) {
                counts[plan.shard[r].unwrap() as usize] += 1;
            }
            // 21 rows over 8 shards: 2 or 3 each.
            assert!(counts.iter().all(|&c| c == 2 || c == 3), "user {u}: {counts:?}");
        }
    }

    #[test]
    fn each_slice_with_more_rows_than_query_size_has_exactly_query_size_query_rows() {
        let rows: Vec<_> = (0..6).flat_map(|u| (0..30).map(move |i| (u, i, i))).collect();
        let d = dataset(&rows);
        let mut split = vec![Split::Train; rows.len()];
        split[0] = Split::Test;
        let config = ShardConfig { query_size: 2, ..ShardConfig::default() };
        let plan = assign(&d, &split, &config, b"k");
        assert_eq!(plan.shard[0], None);
        assert!(!plan.query[0]);
        let mut slices = std::collections::BTreeMap::<(u32, u16), (usize, usize)>::new();
        for r in 0..rows.len() {
            if let Some(s) = plan.shard[r] {
                let e = slices.entry((d.interactions.user[r], s)).or_default();
                e.0 += 1;
                e.1 += plan.query[r] as usize;
            }
        }
        for ((u, s), (n, q)) in slices {
            let expected = if n > 2 { 2 } else { 0 };
            assert_eq!(q, expected, "user {u} shard {s}: {n} rows");
        }
    }
}
