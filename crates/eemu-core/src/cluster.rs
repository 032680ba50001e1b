//! Clustering of users (Algorithm 3 of the EEMU paper): k-means on each shard's user embeddings,
//! then a cluster ensemble. The consensus clusters are k-means on the rows of the co-association
//! matrix CO[u,v] = (1/S) * #{shards where u and v share a cluster}.
//!
//! CO is N x N, too big past a few tens of thousands of users. Distances between its rows depend only
//! on G = H^T H, where H (N x sum of per-shard cluster counts) holds the one-hot labels: with
//! G = L L^T, the points z_u = L^T h_u / S have exactly the pairwise distances of the CO rows, and
//! centroids (means) map the same way, so k-means on z is k-means on CO in O(N * S * K) memory. Both
//! paths are kept ([`ConsensusMethod`]): dense for small N, and as the reference the factorized one is
//! tested against.
use std::collections::HashMap;

use anyhow::{bail, ensure, Context, Result};
use linfa::traits::{Fit, Predict};
use linfa::DatasetBase;
use linfa_clustering::{KMeans, KMeansInit};
use ndarray::{Array2, ArrayView2, Axis};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

/// Relative threshold below which a Cholesky pivot of G counts as zero (G is positive semi-definite
/// and usually rank-deficient).
const PIVOT_TOLERANCE: f64 = 1e-9;

/// k-means settings (k-means++ init, seeded).
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansSettings {
    /// Number of clusters k.
    pub clusters: usize,
    /// Independent k-means++ starts; the one with the lowest inertia wins.
    pub runs: usize,
    /// Iteration cap of one run.
    pub max_iterations: u64,
    /// A run stops when its centroids move less than this (L2 over all centroids).
    pub tolerance: f64,
    /// Seed of the ChaCha8 generator that drives the k-means++ initialisation.
    pub seed: u64,
}

impl KMeansSettings {
    /// Checks the settings, with an error naming the bad field.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.clusters >= 1, "k-means settings: clusters must be at least 1");
        ensure!(
            u32::try_from(self.clusters).is_ok(),
            "k-means settings: clusters = {} does not fit in a u32 label",
            self.clusters
        );
        ensure!(self.runs >= 1, "k-means settings: runs must be at least 1");
        ensure!(self.max_iterations >= 1, "k-means settings: max_iterations must be at least 1");
        ensure!(
            self.tolerance.is_finite() && self.tolerance > 0.0,
            "k-means settings: tolerance must be finite and > 0, got {}",
            self.tolerance
        );
        Ok(())
    }
}

/// Labels of k-means on the rows of `points` (n x d).
///
/// Runs linfa's k-means with k-means++ initialisation, `runs` starts, the tolerance and iteration cap
/// of `s`, driven by `ChaCha8Rng::seed_from_u64(s.seed)`. The labels come from predicting with the
/// fitted model (the best run's centroids): linfa's own memberships are those of the last run. When
/// n <= clusters every point gets its own label (no k-means); n == 0 gives an empty vector.
///
/// Labels are renumbered in order of first appearance over the rows (the first row's cluster is 0),
/// so equal partitions give equal label vectors. Same points and settings give the same labels.
pub fn kmeans_labels<F: linfa::Float>(points: ArrayView2<F>, s: &KMeansSettings) -> Result<Vec<u32>> {
    s.validate()?;
    let n = points.nrows();
    if n <= s.clusters {
        // n <= clusters <= u32::MAX (validated), so the cast is lossless.
        return Ok((0..n as u32).collect());
    }
    ensure!(points.iter().all(|x| x.is_finite()), "k-means: the points contain NaN or infinite values");
    let tolerance = F::from_f64(s.tolerance)
        .filter(|t| t.is_finite() && *t > F::zero())
        .with_context(|| format!("k-means: tolerance {} is not representable in this float type", s.tolerance))?;
    let rng = ChaCha8Rng::seed_from_u64(s.seed);
    let model = KMeans::params_with_rng(s.clusters, rng)
        .init_method(KMeansInit::KMeansPlusPlus)
        .n_runs(s.runs)
        .tolerance(tolerance)
        .max_n_iterations(s.max_iterations)
        .fit(&DatasetBase::from(points))
        .with_context(|| format!("k-means with {} clusters on {} x {} points", s.clusters, n, points.ncols()))?;
    let memberships: ndarray::Array1<usize> = model.predict(&points);
    Ok(canonical_labels(memberships.iter().copied()))
}

/// Renumbers labels in order of first appearance.
fn canonical_labels(labels: impl Iterator<Item = usize>) -> Vec<u32> {
    let mut map: HashMap<usize, u32> = HashMap::new();
    labels
        .map(|l| {
            let next = map.len() as u32;
            *map.entry(l).or_insert(next)
        })
        .collect()
}

/// Per-shard labels of every user: `labels[u]` = Some(cluster) when user u has a label in that shard
/// (it has rows there), None otherwise. `clusters` = number of distinct label values (labels are
/// < clusters).
#[derive(Debug, Clone, PartialEq)]
pub struct ShardLabels {
    /// One entry per user of the dataset.
    pub labels: Vec<Option<u32>>,
    /// Number of label values of this shard; every label is below it.
    pub clusters: usize,
}

impl ShardLabels {
    /// Labels of one shard, checked (every label below `clusters`).
    pub fn new(labels: Vec<Option<u32>>, clusters: usize) -> Result<Self> {
        let shard = Self { labels, clusters };
        shard.validate()?;
        Ok(shard)
    }

    /// Checks that every label is below `clusters`.
    pub fn validate(&self) -> Result<()> {
        for (user, label) in self.labels.iter().enumerate() {
            if let Some(label) = label.filter(|&l| l as usize >= self.clusters) {
                bail!("user {user} has label {label}, but the shard has only {} clusters", self.clusters);
            }
        }
        Ok(())
    }
}

/// How the consensus k-means sees the co-association matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusMethod {
    /// Build the N x N co-association matrix and cluster its rows: O(N^2) memory.
    Dense,
    /// Cluster the factorized points of [`factorized_points`] (same distances): O(N * S * K) memory.
    Factorized,
}

/// The dense co-association matrix over the `users` (indices into the label vectors):
/// CO[i,j] = (1/S) * #{s : labels_s[users[i]] == labels_s[users[j]], both Some}. f64,
/// users.len() x users.len().
///
/// # Panics
/// If a user index is out of range of a shard's labels ([`consensus`] checks this first).
pub fn coassociation(shards: &[ShardLabels], users: &[usize]) -> Array2<f64> {
    let n = users.len();
    let s_count = shards.len();
    // User-major copy so that one CO entry reads two contiguous runs of S labels.
    let codes: Vec<Option<u32>> = users.iter().flat_map(|&u| shards.iter().map(move |s| s.labels[u])).collect();
    let scale = if s_count == 0 { 0.0 } else { 1.0 / s_count as f64 };
    let mut co = Array2::<f64>::zeros((n, n));
    co.axis_iter_mut(Axis(0)).into_par_iter().enumerate().for_each(|(i, mut row)| {
        let a = &codes[i * s_count..(i + 1) * s_count];
        for (j, entry) in row.iter_mut().enumerate() {
            let b = &codes[j * s_count..(j + 1) * s_count];
            let shared = a.iter().zip(b).filter(|(x, y)| x.is_some() && x == y).count();
            *entry = shared as f64 * scale;
        }
    });
    co
}

/// Column offset of each shard's block in H, and the total width (sum of the shards' clusters).
fn block_offsets(shards: &[ShardLabels]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(shards.len());
    let mut width = 0;
    for s in shards {
        offsets.push(width);
        width += s.clusters;
    }
    (offsets, width)
}

/// G = H^T H over the `users`: G[a,b] = number of users with label columns a and b. Exact (integer
/// counts), so independent of summation order.
fn one_hot_gram(shards: &[ShardLabels], users: &[usize]) -> Array2<f64> {
    let (offsets, width) = block_offsets(shards);
    let mut counts = vec![0u64; width * width];
    let mut columns = Vec::with_capacity(shards.len());
    for &u in users {
        columns.clear();
        columns.extend(shards.iter().zip(&offsets).filter_map(|(s, &o)| s.labels[u].map(|l| o + l as usize)));
        for &a in &columns {
            for &b in &columns {
                counts[a * width + b] += 1;
            }
        }
    }
    Array2::from_shape_fn((width, width), |(a, b)| counts[a * width + b] as f64)
}

/// Lower-triangular L with L L^T = G for a positive semi-definite G. A pivot <= PIVOT_TOLERANCE *
/// max diagonal counts as zero: that column of L is zero (in exact arithmetic the rest of the column
/// is then zero too, since a PSD matrix with a zero diagonal entry has a zero row).
fn cholesky_semidefinite(g: &Array2<f64>) -> Array2<f64> {
    let m = g.nrows();
    let max_diagonal = g.diag().iter().copied().fold(0.0, f64::max);
    let threshold = PIVOT_TOLERANCE * max_diagonal;
    let mut l = Array2::<f64>::zeros((m, m));
    for j in 0..m {
        let row_j = l.row(j).to_vec();
        let pivot = g[[j, j]] - row_j[..j].iter().map(|x| x * x).sum::<f64>();
        if pivot <= threshold {
            continue;
        }
        let diagonal = pivot.sqrt();
        l[[j, j]] = diagonal;
        for i in j + 1..m {
            let dot: f64 = l.row(i).iter().zip(&row_j[..j]).map(|(a, b)| a * b).sum();
            l[[i, j]] = (g[[i, j]] - dot) / diagonal;
        }
    }
    l
}

/// The factorized points: z_u = L^T h_u / S (one row per entry of `users`), where H (users x sum_s
/// clusters_s) is the one-hot label matrix (a user without a label in shard s has a zero block),
/// G = H^T H and L L^T = G (Cholesky that tolerates semi-definiteness, f64).
///
/// Then ||z_u - z_v|| == ||CO_u - CO_v|| for the rows of [`coassociation`] over the same `users`, up
/// to rounding, and means map the same way, so k-means on z is k-means on the CO rows. The zero
/// columns of L (zero pivots) are left out of z: they add nothing to any distance, so z has
/// rank(G) columns (at most sum_s clusters_s). Never builds an N x N matrix.
///
/// # Panics
/// If a user index is out of range or a label is not below its shard's `clusters` ([`consensus`]
/// checks both first).
pub fn factorized_points(shards: &[ShardLabels], users: &[usize]) -> Array2<f64> {
    let (offsets, width) = block_offsets(shards);
    let l = cholesky_semidefinite(&one_hot_gram(shards, users));
    let kept: Vec<usize> = (0..width).filter(|&j| l[[j, j]] > 0.0).collect();
    let rank = kept.len();
    let l_kept = l.select(Axis(1), &kept);
    let scale = if shards.is_empty() { 0.0 } else { 1.0 / shards.len() as f64 };
    let mut z = Array2::<f64>::zeros((users.len(), rank));
    z.axis_iter_mut(Axis(0)).into_par_iter().zip(users.par_iter()).for_each(|(mut row, &u)| {
        for (shard, &offset) in shards.iter().zip(&offsets) {
            if let Some(label) = shard.labels[u] {
                row += &l_kept.row(offset + label as usize);
            }
        }
        row *= scale;
    });
    z
}

/// Consensus labels over all users (length = the shards' label length; all shards must have the same
/// length, else an error). Users with no label in any shard get None. The others are clustered with
/// [`kmeans_labels`] (`s.clusters` clusters) on the CO rows (Dense) or the factorized points
/// (Factorized); the labels are numbered in order of first appearance over the labelled users.
pub fn consensus(shards: &[ShardLabels], s: &KMeansSettings, method: ConsensusMethod) -> Result<Vec<Option<u32>>> {
    s.validate()?;
    let Some(first) = shards.first() else {
        return Ok(Vec::new());
    };
    let n = first.labels.len();
    for (i, shard) in shards.iter().enumerate() {
        ensure!(
            shard.labels.len() == n,
            "consensus: shard {i} labels {} users, shard 0 labels {n}; all shards must cover the same users",
            shard.labels.len()
        );
        shard.validate().with_context(|| format!("consensus: shard {i}"))?;
    }
    let labelled: Vec<usize> = (0..n).filter(|&u| shards.iter().any(|s| s.labels[u].is_some())).collect();
    let labels = match method {
        ConsensusMethod::Dense => kmeans_labels(coassociation(shards, &labelled).view(), s),
        ConsensusMethod::Factorized => kmeans_labels(factorized_points(shards, &labelled).view(), s),
    }
    .with_context(|| format!("consensus k-means ({method:?}) over {} labelled users", labelled.len()))?;
    let mut out = vec![None; n];
    for (&u, label) in labelled.iter().zip(labels) {
        out[u] = Some(label);
    }
    Ok(out)
}

/// Picks Dense when the number of labelled users is <= dense_max_users, else Factorized.
pub fn choose_method(labelled_users: usize, dense_max_users: usize) -> ConsensusMethod {
    if labelled_users <= dense_max_users {
        ConsensusMethod::Dense
    } else {
        ConsensusMethod::Factorized
    }
}

/// Number of unordered pairs among `n` items, as f64.
fn pairs(n: u64) -> f64 {
    let n = n as f64;
    n * (n - 1.0) / 2.0
}

/// Adjusted Rand index of two labelings of the same points (Hubert & Arabie). 1.0 for identical
/// partitions (also when both put everything in one cluster, or everything in its own cluster, or
/// there are fewer than two points). NaN when the lengths differ.
pub fn adjusted_rand_index(a: &[u32], b: &[u32]) -> f64 {
    if a.len() != b.len() {
        return f64::NAN;
    }
    let mut joint: HashMap<(u32, u32), u64> = HashMap::new();
    let mut rows: HashMap<u32, u64> = HashMap::new();
    let mut cols: HashMap<u32, u64> = HashMap::new();
    for (&x, &y) in a.iter().zip(b) {
        *joint.entry((x, y)).or_default() += 1;
        *rows.entry(x).or_default() += 1;
        *cols.entry(y).or_default() += 1;
    }
    let index: f64 = joint.values().map(|&c| pairs(c)).sum();
    let sum_rows: f64 = rows.values().map(|&c| pairs(c)).sum();
    let sum_cols: f64 = cols.values().map(|&c| pairs(c)).sum();
    let total = pairs(a.len() as u64);
    if total == 0.0 {
        return 1.0;
    }
    let expected = sum_rows * sum_cols / total;
    let max = (sum_rows + sum_cols) / 2.0;
    // The denominator is zero only when both partitions are all-in-one or both all-singletons, i.e.
    // identical.
    if max == expected {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

/// Labels of `users` users in `shards` shards: a planted group per user, mapped to a random
/// cluster per (shard, group); with probability `noise` a random cluster instead, with
/// probability `missing` no label; `groups` at most `k`. Returns the shards and the planted
/// groups. Synthetic data for the tests and `benches/consensus.rs`: a consensus should recover
/// the groups.
#[doc(hidden)]
pub fn planted_labels(
    users: usize,
    shards: usize,
    k: usize,
    groups: usize,
    noise: f64,
    missing: f64,
    seed: u64,
) -> (Vec<ShardLabels>, Vec<u32>) {
    assert!(groups <= k, "{groups} planted groups cannot map onto {k} clusters");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let truth: Vec<u32> = (0..users).map(|_| rng.gen_range(0..groups as u32)).collect();
    let out = (0..shards)
        .map(|_| {
            let mut map: Vec<u32> = (0..k as u32).collect();
            map.shuffle(&mut rng);
            let labels = truth
                .iter()
                .map(|&g| {
                    if rng.gen_bool(missing) {
                        None
                    } else if rng.gen_bool(noise) {
                        Some(rng.gen_range(0..k as u32))
                    } else {
                        Some(map[g as usize])
                    }
                })
                .collect();
            ShardLabels { labels, clusters: k }
        })
        .collect();
    (out, truth)
}

/// Writes a shard's cached labels: Parquet with columns `user` (internal id, ascending) and
/// `label`, atomically.
pub fn write_labels_file(path: &std::path::Path, users: &[u32], labels: &[u32]) -> Result<()> {
    use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema =
        Schema::new(vec![Field::new("user", DataType::UInt32, false), Field::new("label", DataType::UInt32, false)]);
    let columns: Vec<ArrayRef> =
        vec![Arc::new(UInt32Array::from(users.to_vec())), Arc::new(UInt32Array::from(labels.to_vec()))];
    let batch = RecordBatch::try_new(Arc::new(schema), columns)?;
    crate::store::files::write_parquet_atomic(path, &batch)
}

/// Reads a file written by [`write_labels_file`]: (users, labels).
pub fn read_labels_file(path: &std::path::Path) -> Result<(Vec<u32>, Vec<u32>)> {
    use arrow::array::{Array, UInt32Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(|| format!("{}: not a labels file", path.display()))?;
    let (mut users, mut labels) = (Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.with_context(|| format!("cannot read {}", path.display()))?;
        for (name, out) in [("user", &mut users), ("label", &mut labels)] {
            let col = batch
                .column_by_name(name)
                .and_then(|c| c.as_any().downcast_ref::<UInt32Array>())
                .filter(|c| c.null_count() == 0)
                .with_context(|| format!("{}: no non-null uint32 column '{name}'", path.display()))?;
            out.extend_from_slice(col.values());
        }
    }
    Ok((users, labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    fn settings(clusters: usize) -> KMeansSettings {
        KMeansSettings { clusters, runs: 10, max_iterations: 300, tolerance: 1e-6, seed: 11 }
    }

    fn labels(raw: &[i64]) -> Vec<Option<u32>> {
        raw.iter().map(|&l| u32::try_from(l).ok()).collect()
    }

    fn squared_distance(a: ndarray::ArrayView1<f64>, b: ndarray::ArrayView1<f64>) -> f64 {
        a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
    }

    #[test]
    fn factorized_distances_equal_coassociation_row_distances() {
        let (shards, _) = planted_labels(60, 4, 5, 3, 0.4, 0.2, 1);
        // Include users missing from some (possibly all but one) shards.
        assert!(shards.iter().any(|s| s.labels.iter().any(Option::is_none)));
        let users: Vec<usize> = (0..60).collect();
        let co = coassociation(&shards, &users);
        let z = factorized_points(&shards, &users);
        assert_eq!(z.nrows(), 60);
        assert!(z.ncols() <= 4 * 5);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for _ in 0..500 {
            let (u, v) = (rng.gen_range(0..60), rng.gen_range(0..60));
            let dense = squared_distance(co.row(u), co.row(v));
            let factorized = squared_distance(z.row(u), z.row(v));
            assert!((dense - factorized).abs() < 1e-9, "users {u},{v}: dense {dense} vs factorized {factorized}");
        }
        // Means map the same way: distance of a point to the mean of a group of points.
        let group: Vec<usize> = (0..60).step_by(3).collect();
        let co_mean = co.select(Axis(0), &group).mean_axis(Axis(0)).expect("non-empty group");
        let z_mean = z.select(Axis(0), &group).mean_axis(Axis(0)).expect("non-empty group");
        for u in 0..60 {
            let dense = squared_distance(co.row(u), co_mean.view());
            let factorized = squared_distance(z.row(u), z_mean.view());
            assert!((dense - factorized).abs() < 1e-9, "user {u} to mean: {dense} vs {factorized}");
        }
        let g = one_hot_gram(&shards, &users);
        let l = cholesky_semidefinite(&g);
        let max_error = (&l.dot(&l.t()) - &g).iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max_error < 1e-9, "L L^T differs from G by {max_error}");
        // Every shard's block sums to the same vector over fully labelled users, so G is singular
        // when no label is missing: the factorization must cope with zero pivots.
        let full: Vec<usize> = (0..60).filter(|&u| shards.iter().all(|s| s.labels[u].is_some())).collect();
        let g_full = one_hot_gram(&shards, &full);
        let l_full = cholesky_semidefinite(&g_full);
        let zero_pivots = (0..20).filter(|&j| l_full[[j, j]] == 0.0).count();
        assert!(zero_pivots >= 3, "expected at least S-1 = 3 zero pivots, got {zero_pivots}");
        let max_error = (&l_full.dot(&l_full.t()) - &g_full).iter().fold(0.0f64, |m, x| m.max(x.abs()));
        assert!(max_error < 1e-9, "L L^T differs from G (fully labelled users) by {max_error}");
    }

    #[test]
    fn dense_and_factorized_consensus_give_the_same_partition() {
        let (shards, truth) = planted_labels(400, 8, 6, 5, 0.3, 0.15, 3);
        let s = settings(5);
        let dense = consensus(&shards, &s, ConsensusMethod::Dense).expect("dense consensus");
        let factorized = consensus(&shards, &s, ConsensusMethod::Factorized).expect("factorized consensus");
        assert_eq!(dense.len(), 400);
        let dense: Vec<u32> = dense.into_iter().map(|l| l.expect("every user is labelled")).collect();
        let factorized: Vec<u32> = factorized.into_iter().map(|l| l.expect("every user is labelled")).collect();
        let agreement = adjusted_rand_index(&dense, &factorized);
        let recovery = adjusted_rand_index(&factorized, &truth);
        println!("ARI dense vs factorized = {agreement}, factorized vs planted = {recovery}");
        assert!(agreement >= 0.99, "dense and factorized consensus disagree: ARI {agreement}");
        assert!(recovery > 0.8, "consensus does not recover the planted groups: ARI {recovery}");
        let again = consensus(&shards, &s, ConsensusMethod::Factorized).expect("factorized consensus");
        assert_eq!(again.into_iter().flatten().collect::<Vec<_>>(), factorized, "same seed, different labels");
    }

    #[test]
    fn kmeans_labels_recovers_separated_blobs_deterministically() {
        let centres = [[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]];
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let truth: Vec<u32> = (0..90).map(|i| (i % 3) as u32).collect();
        let points = Array2::from_shape_fn((90, 2), |(i, d)| centres[i % 3][d] + rng.gen_range(-1.0..1.0));
        let s = settings(3);
        let found = kmeans_labels(points.view(), &s).expect("k-means");
        assert_eq!(adjusted_rand_index(&found, &truth), 1.0);
        // Canonical numbering: truth is numbered by first appearance too.
        assert_eq!(found, truth);
        assert_eq!(kmeans_labels(points.view(), &s).expect("k-means"), found);
        let single: Array2<f32> = points.mapv(|x| x as f32);
        assert_eq!(kmeans_labels(single.view(), &s).expect("k-means f32"), truth);
        let few = array![[1.0, 1.0], [1.0, 1.0], [5.0, 5.0]];
        assert_eq!(kmeans_labels(few.view(), &settings(3)).expect("n == clusters"), vec![0, 1, 2]);
        assert_eq!(kmeans_labels(few.view(), &settings(7)).expect("n < clusters"), vec![0, 1, 2]);
        assert!(kmeans_labels(Array2::<f64>::zeros((0, 4)).view(), &s).expect("empty").is_empty());
    }

    #[test]
    fn kmeans_labels_rejects_bad_settings_and_points() {
        let points = Array2::from_shape_fn((10, 2), |(i, d)| (i * 2 + d) as f64);
        for bad in [
            KMeansSettings { clusters: 0, ..settings(2) },
            KMeansSettings { runs: 0, ..settings(2) },
            KMeansSettings { max_iterations: 0, ..settings(2) },
            KMeansSettings { tolerance: 0.0, ..settings(2) },
            KMeansSettings { tolerance: f64::NAN, ..settings(2) },
        ] {
            assert!(kmeans_labels(points.view(), &bad).is_err(), "accepted {bad:?}");
        }
        let mut with_nan = points.clone();
        with_nan[[3, 1]] = f64::NAN;
        assert!(kmeans_labels(with_nan.view(), &settings(2)).is_err());
    }

    #[test]
    fn adjusted_rand_index_matches_hand_computation() {
        // a = {0,1,2}{3,4,5}, b = {0,1}{2,3}{4,5}. Contingency [[2,1,0],[0,1,2]]:
        // index = C(2,2)+C(2,2) = 2; rows: 2*C(3,2) = 6; columns: 3*C(2,2) = 3; pairs C(6,2) = 15.
        // expected = 6*3/15 = 1.2, max = (6+3)/2 = 4.5, ARI = (2-1.2)/(4.5-1.2) = 0.8/3.3 = 8/33.
        let a = [0, 0, 0, 1, 1, 1];
        let b = [0, 0, 1, 1, 2, 2];
        assert!((adjusted_rand_index(&a, &b) - 8.0 / 33.0).abs() < 1e-12);
        assert!((adjusted_rand_index(&b, &a) - 8.0 / 33.0).abs() < 1e-12);
        assert_eq!(adjusted_rand_index(&[0, 0, 1, 1, 2], &[7, 7, 3, 3, 0]), 1.0);
        assert_eq!(adjusted_rand_index(&[4, 4, 4], &[1, 1, 1]), 1.0);
        assert_eq!(adjusted_rand_index(&[0, 1, 2], &[2, 0, 1]), 1.0);
        assert!(adjusted_rand_index(&[0, 0, 0, 0], &[0, 1, 2, 3]) < 0.5);
        assert!(adjusted_rand_index(&[0, 1], &[0]).is_nan());
    }

    #[test]
    fn coassociation_matches_hand_computation() {
        // Shard 0: users 0 and 1 together, user 2 apart. Shard 1: users 0 and 2 together, user 1
        // missing. CO = (1/2) * shared shards.
        let shards = [
            ShardLabels { labels: labels(&[0, 0, 1]), clusters: 2 },
            ShardLabels { labels: labels(&[1, -1, 1]), clusters: 2 },
        ];
        let co = coassociation(&shards, &[0, 1, 2]);
        let expected = array![[1.0, 0.5, 0.5], [0.5, 0.5, 0.0], [0.5, 0.0, 1.0]];
        assert_eq!(co, expected);
        assert_eq!(coassociation(&shards, &[2, 0]), array![[1.0, 0.5], [0.5, 1.0]]);
    }

    #[test]
    fn consensus_rejects_ragged_shards_and_leaves_unlabelled_users_out() {
        let s = settings(2);
        let ragged = [
            ShardLabels { labels: labels(&[0, 1, 0]), clusters: 2 },
            ShardLabels { labels: labels(&[0, 1]), clusters: 2 },
        ];
        for method in [ConsensusMethod::Dense, ConsensusMethod::Factorized] {
            assert!(consensus(&ragged, &s, method).is_err());
        }
        let out_of_range = [ShardLabels { labels: labels(&[0, 2]), clusters: 2 }];
        assert!(consensus(&out_of_range, &s, ConsensusMethod::Factorized).is_err());
        assert!(ShardLabels::new(labels(&[0, 2]), 2).is_err());

        let shards = [
            ShardLabels { labels: labels(&[0, -1, 0, 1, 1, -1, 1]), clusters: 2 },
            ShardLabels { labels: labels(&[1, -1, 1, 0, 0, -1, -1]), clusters: 2 },
        ];
        for method in [ConsensusMethod::Dense, ConsensusMethod::Factorized] {
            let out = consensus(&shards, &s, method).expect("consensus");
            assert_eq!(out, vec![Some(0), None, Some(0), Some(1), Some(1), None, Some(1)], "{method:?}");
        }
        assert!(consensus(&[], &s, ConsensusMethod::Dense).expect("no shards").is_empty());
    }

    #[test]
    fn choose_method_switches_at_the_dense_limit() {
        assert_eq!(choose_method(100, 100), ConsensusMethod::Dense);
        assert_eq!(choose_method(101, 100), ConsensusMethod::Factorized);
    }
}
