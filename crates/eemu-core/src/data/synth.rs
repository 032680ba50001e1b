//! Synthetic demo data, deterministic by seed: users in planted taste groups, power-law item
//! popularity, timestamps, categorical user features (age bucket, gender, occupation) and item
//! features (release year, multi-hot genres, a small dense vector). Written as CSV or Parquet in
//! the generic input layout that `configs/demo.toml` declares.
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch, StringArray};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Schema};
use rand::distributions::{Distribution, WeightedIndex};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::store::files::{write_atomic, write_parquet_atomic};

const GENRES: [&str; 12] = [
    "Action",
    "Adventure",
    "Animation",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Horror",
    "Romance",
    "Sci-Fi",
    "Thriller",
];
const AGE_BUCKETS: [i64; 7] = [1, 18, 25, 35, 45, 50, 56];
/// Length of the items' dense feature vector.
pub const DENSE_DIM: usize = 8;

/// Size and shape of a synthetic dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthParams {
    pub users: usize,
    pub items: usize,
    pub min_interactions: usize,
    pub max_interactions: usize,
    pub groups: usize,
    /// Exponent of the item popularity power law (weight of the r-th most popular item ~ r^-a).
    pub popularity_exponent: f64,
    /// Probability that an interaction follows the user's taste group.
    pub taste_strength: f64,
    pub seed: u64,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            users: 1000,
            items: 800,
            min_interactions: 20,
            max_interactions: 60,
            groups: 8,
            popularity_exponent: 0.9,
            taste_strength: 0.8,
            seed: 7,
        }
    }
}

impl SynthParams {
    pub fn validate(&self) -> Result<()> {
        if self.users == 0 || self.items == 0 {
            bail!("--users and --items must be at least 1");
        }
        if self.min_interactions == 0 || self.min_interactions > self.max_interactions {
            bail!(
                "--interactions-per-user MIN..MAX needs 1 <= MIN <= MAX, got {}..{}",
                self.min_interactions,
                self.max_interactions
            );
        }
        if self.max_interactions > self.items {
            bail!("--interactions-per-user max ({}) exceeds --items ({})", self.max_interactions, self.items);
        }
        if self.groups == 0 {
            bail!("--groups must be at least 1");
        }
        Ok(())
    }
}

/// A generated dataset in its file form (original ids and labels).
#[derive(Debug, Clone, PartialEq)]
pub struct SynthData {
    pub user_ids: Vec<String>,
    pub user_group: Vec<usize>,
    pub user_age: Vec<i64>,
    pub user_gender: Vec<String>,
    pub user_occupation: Vec<i64>,
    pub item_ids: Vec<i64>,
    pub item_year: Vec<i64>,
    pub item_genres: Vec<Vec<String>>,
    pub item_dense: Vec<f32>,
    /// (user index, item index, timestamp) in generation order.
    pub interactions: Vec<(usize, usize, i64)>,
}

/// Generates a dataset; the same params give the same data.
pub fn generate(p: &SynthParams) -> Result<SynthData> {
    p.validate()?;
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let n_genres = GENRES.len();
    // Taste groups: each prefers 2-3 genres and leans towards some age buckets.
    let group_genres: Vec<Vec<usize>> = (0..p.groups)
        .map(|_| {
            let mut g: Vec<usize> = (0..n_genres).collect();
            g.shuffle(&mut rng);
            g.truncate(rng.gen_range(2..=3));
            g
        })
        .collect();
    let group_age: Vec<usize> = (0..p.groups).map(|_| rng.gen_range(0..AGE_BUCKETS.len())).collect();
    // Items: genres, year, dense vector near the centroid of the primary genre, popularity rank.
    let centroids: Vec<f32> = (0..n_genres * DENSE_DIM).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut item_genres = Vec::with_capacity(p.items);
    let mut item_genre_idx = Vec::with_capacity(p.items);
    let mut item_dense = Vec::with_capacity(p.items * DENSE_DIM);
    let mut item_year = Vec::with_capacity(p.items);
    for _ in 0..p.items {
        let primary = rng.gen_range(0..n_genres);
        let mut set = vec![primary];
        for _ in 0..rng.gen_range(0..=2) {
            let g = rng.gen_range(0..n_genres);
            if !set.contains(&g) {
                set.push(g);
            }
        }
        for d in 0..DENSE_DIM {
            let noise: f32 = rng.gen_range(-0.3..0.3);
            item_dense.push(((centroids[primary * DENSE_DIM + d] + noise) * 1000.0).round() / 1000.0);
        }
        item_year.push(rng.gen_range(1950..=2025));
        item_genres.push(set.iter().map(|&g| GENRES[g].to_string()).collect());
        item_genre_idx.push(set);
    }
    let mut rank: Vec<usize> = (0..p.items).collect();
    rank.shuffle(&mut rng);
    let popularity: Vec<f64> = rank.iter().map(|&r| 1.0 / ((r + 1) as f64).powf(p.popularity_exponent)).collect();
    let everyone = WeightedIndex::new(&popularity).context("item popularity weights")?;
    let group_pick: Vec<Option<WeightedIndex<f64>>> = group_genres
        .iter()
        .map(|genres| {
            let w: Vec<f64> = (0..p.items)
                .map(|i| if item_genre_idx[i].iter().any(|g| genres.contains(g)) { popularity[i] } else { 0.0 })
                .collect();
            WeightedIndex::new(&w).ok()
        })
        .collect();
    // Users and their histories.
    let mut data = SynthData {
        user_ids: Vec::with_capacity(p.users),
        user_group: Vec::with_capacity(p.users),
        user_age: Vec::with_capacity(p.users),
        user_gender: Vec::with_capacity(p.users),
        user_occupation: Vec::with_capacity(p.users),
        item_ids: (1..=p.items as i64).collect(),
        item_year,
        item_genres,
        item_dense,
        interactions: Vec::new(),
    };
    let width = p.users.to_string().len().max(5);
    for u in 0..p.users {
        let group = rng.gen_range(0..p.groups);
        let age = if rng.gen_bool(0.7) { group_age[group] } else { rng.gen_range(0..AGE_BUCKETS.len()) };
        data.user_ids.push(format!("u{u:0width$}"));
        data.user_group.push(group);
        data.user_age.push(AGE_BUCKETS[age]);
        data.user_gender.push(if rng.gen_bool(0.5) { "F" } else { "M" }.to_string());
        data.user_occupation.push(rng.gen_range(0..21));
        let n = rng.gen_range(p.min_interactions..=p.max_interactions);
        let mut seen = vec![false; p.items];
        let mut time = 1_600_000_000i64 + rng.gen_range(0..30 * 86_400);
        let mut taken = 0;
        let mut tries = 0;
        while taken < n && tries < 50 * n {
            tries += 1;
            let item = match &group_pick[group] {
                Some(pick) if rng.gen_bool(p.taste_strength) => pick.sample(&mut rng),
                _ => everyone.sample(&mut rng),
            };
            if seen[item] {
                continue;
            }
            seen[item] = true;
            taken += 1;
            time += rng.gen_range(60..86_400);
            data.interactions.push((u, item, time));
        }
        // Rare when max is close to the catalog size: fill up with unseen items in id order.
        for item in (0..p.items).filter(|&i| !seen[i]).take(n - taken) {
            time += rng.gen_range(60..86_400);
            data.interactions.push((u, item, time));
        }
    }
    Ok(data)
}

/// Output file format of `eemu synth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthFormat {
    Csv,
    Parquet,
}

impl SynthFormat {
    pub fn extension(self) -> &'static str {
        match self {
            SynthFormat::Csv => "csv",
            SynthFormat::Parquet => "parquet",
        }
    }
}

/// Writes `interactions`, `users` and `items` files into `dir`; returns their paths.
pub fn write(data: &SynthData, dir: &Path, format: SynthFormat) -> Result<[std::path::PathBuf; 3]> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let ext = format.extension();
    let paths =
        [dir.join(format!("interactions.{ext}")), dir.join(format!("users.{ext}")), dir.join(format!("items.{ext}"))];
    match format {
        SynthFormat::Csv => {
            let mut s = String::from("user_id,item_id,timestamp\n");
            for &(u, i, t) in &data.interactions {
                let _ = writeln!(s, "{},{},{}", data.user_ids[u], data.item_ids[i], t);
            }
            write_atomic(&paths[0], s.as_bytes())?;
            let mut s = String::from("user_id,age,gender,occupation\n");
            for u in 0..data.user_ids.len() {
                let _ = writeln!(
                    s,
                    "{},{},{},{}",
                    data.user_ids[u], data.user_age[u], data.user_gender[u], data.user_occupation[u]
                );
            }
            write_atomic(&paths[1], s.as_bytes())?;
            let mut s = String::from("item_id,year,genres,embedding\n");
            for i in 0..data.item_ids.len() {
                let dense: Vec<String> =
                    data.item_dense[i * DENSE_DIM..(i + 1) * DENSE_DIM].iter().map(|v| v.to_string()).collect();
                let _ = writeln!(
                    s,
                    "{},{},{},{}",
                    data.item_ids[i],
                    data.item_year[i],
                    data.item_genres[i].join("|"),
                    dense.join(";")
                );
            }
            write_atomic(&paths[2], s.as_bytes())?;
        }
        SynthFormat::Parquet => {
            let x = &data.interactions;
            let batch = batch(vec![
                ("user_id", Arc::new(StringArray::from_iter_values(x.iter().map(|r| data.user_ids[r.0].as_str())))),
                ("item_id", Arc::new(Int64Array::from_iter_values(x.iter().map(|r| data.item_ids[r.1])))),
                ("timestamp", Arc::new(Int64Array::from_iter_values(x.iter().map(|r| r.2)))),
            ])?;
            write_parquet_atomic(&paths[0], &batch)?;
            let batch = batch_users(data)?;
            write_parquet_atomic(&paths[1], &batch)?;
            let batch = batch_items(data)?;
            write_parquet_atomic(&paths[2], &batch)?;
        }
    }
    Ok(paths)
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    let fields: Vec<Field> = columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), false)).collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).context("building a record batch")
}

fn batch_users(d: &SynthData) -> Result<RecordBatch> {
    batch(vec![
        ("user_id", Arc::new(StringArray::from_iter_values(d.user_ids.iter()))),
        ("age", Arc::new(Int64Array::from(d.user_age.clone()))),
        ("gender", Arc::new(StringArray::from_iter_values(d.user_gender.iter()))),
        ("occupation", Arc::new(Int64Array::from(d.user_occupation.clone()))),
    ])
}

fn batch_items(d: &SynthData) -> Result<RecordBatch> {
    let values = StringArray::from_iter_values(d.item_genres.iter().flatten());
    let offsets = OffsetBuffer::from_lengths(d.item_genres.iter().map(Vec::len));
    let genres =
        ListArray::try_new(Arc::new(Field::new("item", DataType::Utf8, false)), offsets, Arc::new(values), None)?;
    let dense = FixedSizeListArray::try_new(
        Arc::new(Field::new("item", DataType::Float32, false)),
        DENSE_DIM as i32,
        Arc::new(Float32Array::from(d.item_dense.clone())),
        None,
    )?;
    batch(vec![
        ("item_id", Arc::new(Int64Array::from(d.item_ids.clone()))),
        ("year", Arc::new(Int64Array::from(d.item_year.clone()))),
        ("genres", Arc::new(genres)),
        ("embedding", Arc::new(dense)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SynthParams {
        SynthParams {
            users: 200,
            items: 300,
            min_interactions: 10,
            max_interactions: 30,
            seed,
            ..SynthParams::default()
        }
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        assert_eq!(generate(&small(1)).unwrap(), generate(&small(1)).unwrap());
        assert_ne!(generate(&small(1)).unwrap().interactions, generate(&small(2)).unwrap().interactions);
    }

    #[test]
    fn every_user_gets_a_history_within_the_range_without_repeats() {
        let d = generate(&small(3)).unwrap();
        let mut per_user = vec![std::collections::BTreeSet::new(); 200];
        for &(u, i, _) in &d.interactions {
            assert!(per_user[u].insert(i), "user {u} saw item {i} twice");
        }
        assert!(per_user.iter().all(|s| (10..=30).contains(&s.len())));
    }

    #[test]
    fn popularity_is_skewed() {
        let d = generate(&SynthParams { users: 2000, items: 500, ..small(4) }).unwrap();
        let mut counts = vec![0usize; 500];
        for &(_, i, _) in &d.interactions {
            counts[i] += 1;
        }
        counts.sort_unstable_by(|a, b| b.cmp(a));
        let top: usize = counts[..50].iter().sum();
        let total: usize = counts.iter().sum();
        // A uniform catalog would give the top 10% of items 10% of interactions.
        assert!(top as f64 > 0.25 * total as f64, "top 50 items hold {top} of {total}");
    }

    #[test]
    fn users_of_a_group_share_taste() {
        let d = generate(&SynthParams { users: 400, ..small(5) }).unwrap();
        // Jaccard overlap of item sets: same-group pairs should overlap more than cross-group pairs.
        let sets: Vec<std::collections::BTreeSet<usize>> =
            (0..400).map(|u| d.interactions.iter().filter(|r| r.0 == u).map(|r| r.1).collect()).collect();
        let jaccard = |a: usize, b: usize| {
            let i = sets[a].intersection(&sets[b]).count() as f64;
            i / (sets[a].len() + sets[b].len()) as f64
        };
        let (mut same, mut ns, mut cross, mut nc) = (0.0, 0, 0.0, 0);
        for a in 0..100 {
            for b in (a + 1)..100 {
                if d.user_group[a] == d.user_group[b] {
                    same += jaccard(a, b);
                    ns += 1;
                } else {
                    cross += jaccard(a, b);
                    nc += 1;
                }
            }
        }
        assert!(same / ns as f64 > 1.5 * cross / nc as f64);
    }

    #[test]
    fn timestamps_increase_within_each_user() {
        let d = generate(&small(6)).unwrap();
        for w in d.interactions.windows(2) {
            if w[0].0 == w[1].0 {
                assert!(w[1].2 > w[0].2);
            }
        }
    }
}
