//! Clustered batch inference (paper Section 6, Algorithm 3), the nightly job's core:
//!
//! 1. **embed**: each shard model gives the embeddings of the users with rows in that shard;
//! 2. **cluster**: k-means per shard (linfa), cached under the shard model's hash;
//! 3. **consensus**: k-means on the co-association of the shards' labelings (dense or factorized);
//! 4. **adapt**: per (shard, cluster), a fresh Adam takes `infer.adapt_steps` steps on the union
//!    of the cluster's users' adaptation sets (sampled as in per-user mode); never written;
//! 5. **score**: mean over shards of x_u . y_i = one matrix product per cluster over the shards'
//!    concatenated embeddings, training items excluded, top-K kept per batch of users.
//!
//! Users without training rows get the most popular items (by training degree), flagged
//! `fallback`. Inference-time inputs (item degrees, seen items) come fresh from the current data.
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ndarray::Array2;
use rand::distributions::{Distribution, WeightedIndex};
use rand::Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};
use tracing::info;

use crate::cluster::{self, ConsensusMethod, KMeansSettings, ShardLabels};
use crate::config::{AdaptScope, ClusterConfig, Config, ConsensusChoice};
use crate::data::split::Split;
use crate::model::{gather_rows, TwoTower};
use crate::output::{Source, UserTopK};
use crate::store::{Manifest, Prepared, Store, MODEL_FILE};
use crate::train::{hinge, stream, Adam, ShardData};

/// Folder of the runs inside a store.
pub const RUNS_DIR: &str = "runs";
/// File in `runs/` naming the latest complete run.
pub const LATEST_FILE: &str = "LATEST";

/// A run's id: a hash of everything its output depends on (dataset content, resolved config,
/// shard model files), so re-running on unchanged inputs finds the run already complete.
pub fn run_id(p: &Prepared, config: &Config, models: &[ShardModel]) -> String {
    let key = serde_json::json!({
        "format": 1,
        "dataset": p.id,
        "config": config.hash(),
        "models": models.iter().map(|m| &m.model_sha256).collect::<Vec<_>>(),
    });
    crate::config::hex(&Sha256::digest(key.to_string().as_bytes())[..8])
}

/// Writes a run's recommendations and manifest into `runs/<run-id>/`, publishing it atomically
/// (`_SUCCESS` and `manifest.json` last), then points `runs/LATEST` at it.
#[allow(clippy::too_many_arguments)]
pub fn publish(
    runs_dir: &std::path::Path,
    run_id: &str,
    p: &Prepared,
    config: &Config,
    result: &Inference,
    device: Device,
    load_seconds: f64,
    started: Instant,
) -> Result<PathBuf> {
    use crate::output::{write_recommendations, Layout, RunWriter, RECOMMENDATIONS_FILE};
    let writer = RunWriter::begin(runs_dir, run_id)?;
    let layout = match config.infer.layout {
        crate::config::LayoutChoice::Nested => Layout::Nested,
        crate::config::LayoutChoice::Flat => Layout::Flat,
    };
    let start = Instant::now();
    let rows = write_recommendations(
        &writer.path(RECOMMENDATIONS_FILE),
        &p.dataset.users.ids,
        &p.dataset.items.ids,
        &result.recs,
        layout,
        config.infer.row_group_rows,
    )?;
    let write_seconds = start.elapsed().as_secs_f64();
    let personalized = result.recs.iter().filter(|r| r.source == Source::Personalized).count();
    let mut seconds: serde_json::Map<String, serde_json::Value> =
        result.seconds.iter().map(|(k, v)| (k.to_string(), (*v).into())).collect();
    seconds.insert("load_models".into(), load_seconds.into());
    seconds.insert("write".into(), write_seconds.into());
    seconds.insert("total".into(), started.elapsed().as_secs_f64().into());
    let manifest = serde_json::json!({
        "run_id": run_id,
        "eemu_version": env!("CARGO_PKG_VERSION"),
        "dataset": p.id,
        "config_hash": config.hash(),
        "seed": config.seed,
        "layout": layout,
        "file": RECOMMENDATIONS_FILE,
        "top_k": config.infer.top_k,
        "device": format!("{device:?}"),
        "consensus": { "method": result.consensus, "clusters": result.clusters },
        "shards": result.shards,
        "counts": {
            "users": result.recs.len(),
            "personalized": personalized,
            "fallback": result.recs.len() - personalized,
            "items": p.dataset.items.len(),
            "rows": rows,
        },
        "seconds": seconds,
    });
    let folder = writer.commit(&manifest)?;
    crate::store::files::write_atomic(&runs_dir.join(LATEST_FILE), format!("{run_id}\n").as_bytes())?;
    Ok(folder)
}

/// What inference needs to know about every user's history, computed from the current data.
pub struct History {
    /// Per user (all users of the dataset): sorted distinct training items, all shards.
    pub train_items: Vec<Vec<u32>>,
    /// Per user: the validation item, never drawn as a negative.
    pub validation: Vec<Option<u32>>,
    /// Training degree of every item.
    pub degree: Vec<u32>,
    pub n_items: usize,
}

impl History {
    pub fn new(p: &Prepared) -> History {
        let x = &p.dataset.interactions;
        let n_items = p.dataset.items.len();
        let mut train_items = vec![Vec::new(); p.dataset.users.len()];
        let mut validation = vec![None; p.dataset.users.len()];
        let mut degree = vec![0u32; n_items];
        for r in 0..x.len() {
            match p.split[r] {
                Split::Train => {
                    train_items[x.user[r] as usize].push(x.item[r]);
                    degree[x.item[r] as usize] += 1;
                }
                Split::Valid => validation[x.user[r] as usize] = Some(x.item[r]),
                Split::Test => {}
            }
        }
        for items in &mut train_items {
            items.sort_unstable();
            items.dedup();
        }
        History { train_items, validation, degree, n_items }
    }

    /// The user's adaptation set (see [`adaptation_set`]).
    pub fn adaptation_set(&self, user: u32, c: &Config) -> (Vec<i64>, Vec<i64>) {
        let u = user as usize;
        adaptation_set(
            user,
            &self.train_items[u],
            self.validation[u],
            &self.degree,
            c.seed,
            c.adapt.set_size,
            c.adapt.negatives_drawn(),
            c.adapt.temperature,
        )
    }
}

/// A user's adaptation set (paper Algorithm 2): `size` draws with replacement from the user's
/// training items with p_i ~ exp((1/d_i - max_j 1/d_j) / T), and `negatives` (1 to `size`)
/// uniform negatives (not training items, not `validation`), repeated in turn to `size` so that
/// item i is paired with negative i mod `negatives`. With `negatives == size` (the reference) each
/// item has its own. Keyed by (seed, user): the same set for every shard and every run over the
/// same data; the first k negatives are the same for every `negatives` >= k. Empty for a user
/// without training items.
#[allow(clippy::too_many_arguments)]
pub fn adaptation_set(
    user: u32,
    items: &[u32],
    validation: Option<u32>,
    degree: &[u32],
    seed: u64,
    size: usize,
    negatives: usize,
    temperature: f64,
) -> (Vec<i64>, Vec<i64>) {
    assert!((1..=size).contains(&negatives), "1 to {size} negatives, got {negatives}");
    let mut rng = stream(seed, user as usize, "adaptation", 0);
    if items.is_empty() {
        return (vec![], vec![]);
    }
    let inv: Vec<f64> = items.iter().map(|&i| 1.0 / degree[i as usize].max(1) as f64).collect();
    let max = inv.iter().cloned().fold(f64::MIN, f64::max);
    let w: Vec<f64> = inv.iter().map(|x| ((x - max) / temperature).exp()).collect();
    let pick = WeightedIndex::new(&w).expect("positive weights");
    let pos: Vec<i64> = (0..size).map(|_| items[pick.sample(&mut rng)] as i64).collect();
    let n_items = degree.len() as u32;
    let drawn: Vec<i64> = (0..negatives)
        .map(|_| {
            for _ in 0..10_000 {
                let i = rng.gen_range(0..n_items);
                if items.binary_search(&i).is_err() && validation != Some(i) {
                    return i as i64;
                }
            }
            // Every item is a positive of this user: any item will do.
            rng.gen_range(0..n_items) as i64
        })
        .collect();
    let neg = (0..size).map(|i| drawn[i % negatives]).collect();
    (pos, neg)
}

/// A trained shard model loaded from the store.
pub struct ShardModel {
    pub index: usize,
    pub lineage: String,
    /// SHA-256 of the model file: the key of the cached labels.
    pub model_sha256: String,
    pub model: TwoTower,
    /// Users with rows in this shard, ascending (the users it clusters).
    pub users: Vec<u32>,
}

/// Loads every shard's model; fails naming the first shard that is not trained.
pub fn load_models(store: &Store, manifest: &Manifest, p: &Prepared, device: Device) -> Result<Vec<ShardModel>> {
    let mut out = Vec::with_capacity(manifest.shards.len());
    for shard in &manifest.shards {
        let dir = store.shard_dir(shard.index, &shard.lineage);
        let path = dir.join(MODEL_FILE);
        if !path.is_file() {
            bail!(
                "shard {} has no model for its lineage {} ({} is missing): run `eemu train` or `eemu nightly` first",
                shard.index,
                shard.lineage,
                path.display()
            );
        }
        let data = ShardData::from_prepared(p, Some(shard.index));
        let mut model = data.new_model(p, device);
        let named = Tensor::read_safetensors(&path).with_context(|| format!("cannot read {}", path.display()))?;
        model.load_named(named).with_context(|| format!("{}: does not fit this store's model", path.display()))?;
        out.push(ShardModel {
            index: shard.index,
            lineage: shard.lineage.clone(),
            model_sha256: crate::store::files::sha256_file(&path)?,
            model,
            users: data.users,
        });
    }
    Ok(out)
}

/// Embeddings [users x d] of `users` under the model's own (global) parameters, on the CPU.
pub fn user_embeddings(model: &TwoTower, users: &[u32]) -> Array2<f32> {
    let d = model.user.widths.last().copied().unwrap_or(0) as usize;
    let mut out = Vec::with_capacity(users.len() * d);
    tch::no_grad(|| {
        let p = model.params.views(&model.params.flat);
        for chunk in users.chunks(65536) {
            let ids: Vec<i64> = chunk.iter().map(|&u| u as i64).collect();
            let v = model.user_vectors(&p, &Tensor::from_slice(&ids).to_device(model.device));
            out.extend(Vec::<f32>::try_from(v.to_device(Device::Cpu).flatten(0, 1)).expect("f32 embeddings"));
        }
    });
    Array2::from_shape_vec((users.len(), d), out).expect("users x d")
}

/// k-means settings of a shard's labels (seeded by the global seed and the shard) or of the
/// consensus (`shard` = None).
pub fn kmeans_settings(c: &ClusterConfig, clusters: usize, seed: u64, shard: Option<usize>) -> KMeansSettings {
    let mut h = Sha256::new();
    h.update(b"eemu-kmeans-v1");
    h.update(seed.to_le_bytes());
    match shard {
        Some(s) => h.update((s as u64).to_le_bytes()),
        None => h.update(b"consensus"),
    }
    let digest = h.finalize();
    KMeansSettings {
        clusters,
        runs: c.runs,
        max_iterations: c.max_iterations,
        tolerance: c.tolerance,
        seed: u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")),
    }
}

/// Labels of one shard's users: k-means on their embeddings. `n_users` = users of the dataset.
pub fn compute_shard_labels(
    model: &TwoTower,
    users: &[u32],
    n_users: usize,
    s: &KMeansSettings,
) -> Result<ShardLabels> {
    let x = user_embeddings(model, users);
    let labels = cluster::kmeans_labels(x.view(), s)?;
    Ok(to_shard_labels(users, &labels, n_users))
}

fn to_shard_labels(users: &[u32], labels: &[u32], n_users: usize) -> ShardLabels {
    let mut all = vec![None; n_users];
    for (&u, &l) in users.iter().zip(labels) {
        all[u as usize] = Some(l);
    }
    ShardLabels { clusters: labels.iter().map(|&l| l as usize + 1).max().unwrap_or(0), labels: all }
}

/// File of a shard's cached labels: named by a key of (model hash, k-means settings).
fn labels_path(store: &Store, m: &ShardModel, s: &KMeansSettings) -> PathBuf {
    let mut h = Sha256::new();
    h.update(b"eemu-labels-v1");
    h.update(m.model_sha256.as_bytes());
    h.update(format!("{}|{}|{}|{}|{}", s.clusters, s.runs, s.max_iterations, s.tolerance, s.seed).as_bytes());
    let key = crate::config::hex(&h.finalize()[..8]);
    store.shard_dir(m.index, &m.lineage).join(format!("labels-{key}.parquet"))
}

/// A shard's labels from its cache file when the model and settings are unchanged, otherwise
/// computed and cached. Returns the labels and whether they came from the cache.
pub fn shard_labels(store: &Store, m: &ShardModel, n_users: usize, s: &KMeansSettings) -> Result<(ShardLabels, bool)> {
    let path = labels_path(store, m, s);
    if path.is_file() {
        let (users, labels) = cluster::read_labels_file(&path)?;
        if users == m.users {
            return Ok((to_shard_labels(&users, &labels, n_users), true));
        }
        info!(shard = m.index, file = %path.display(), "cached labels do not match the shard's users; recomputing");
    }
    let computed = compute_shard_labels(&m.model, &m.users, n_users, s)?;
    let labels: Vec<u32> = m.users.iter().map(|&u| computed.labels[u as usize].expect("labelled")).collect();
    cluster::write_labels_file(&path, &m.users, &labels)?;
    Ok((computed, false))
}

/// The consensus method for `labelled` users under the config.
pub fn consensus_method(c: &ClusterConfig, labelled: usize) -> ConsensusMethod {
    match c.consensus {
        ConsensusChoice::Dense => ConsensusMethod::Dense,
        ConsensusChoice::Factorized => ConsensusMethod::Factorized,
        ConsensusChoice::Auto => cluster::choose_method(labelled, c.dense_max_users),
    }
}

/// One specialized model of a (shard, cluster): the shard model after `steps` steps of a fresh
/// Adam on the union of the cluster users' adaptation sets, moving what `moving` (built from
/// the same model) says.
/// Returns the adapted vectors of `users` [n x d] and of every item [I x d] (the shard model's
/// under `AdaptScope::User` and `AdaptScope::Vector`); the adapted weights are dropped. Under
/// `AdaptScope::Vector` no weight moves: each user's vector is adapted on its own set.
pub fn specialize(
    model: &TwoTower,
    users: &[u32],
    sets: &[&(Vec<i64>, Vec<i64>)],
    lr: f64,
    margin: f64,
    moving: &Moving,
    steps: usize,
) -> (Tensor, Tensor) {
    specialize_at(model, users, sets, lr, margin, moving, &[steps]).remove(0)
}

/// What an adaptation of a shard model moves. Under a scope that keeps the item side, it holds
/// the shard model's vectors of every item [I x d], read once outside the graph: one read
/// serves every adaptation of the same model.
pub enum Moving {
    /// Every parameter (`AdaptScope::All`).
    All,
    /// The user side's parameters; every item keeps these vectors (`AdaptScope::User`).
    UserSide(Tensor),
    /// Each user's final vector alone; every item keeps these vectors (`AdaptScope::Vector`).
    UserVectors(Tensor),
}

impl Moving {
    /// What an adaptation of `scope` moves on `model`.
    pub fn of(model: &TwoTower, scope: AdaptScope) -> Moving {
        let kept = || tch::no_grad(|| model.all_item_vectors(&model.params.views(&model.params.flat)));
        match scope {
            AdaptScope::All => Moving::All,
            AdaptScope::User => Moving::UserSide(kept()),
            AdaptScope::Vector => Moving::UserVectors(kept()),
        }
    }

    /// The item vectors every item keeps; None when the item side moves.
    pub fn fixed(&self) -> Option<&Tensor> {
        match self {
            Moving::All => None,
            Moving::UserSide(v) | Moving::UserVectors(v) => Some(v),
        }
    }
}

/// [`specialize`] read at several points of one adaptation: the (user, item) vectors after each
/// step count in `step_counts` (ascending). The same fresh Adam runs up to the last one, so the
/// vectors after `s` steps are those of `specialize(.., s)`.
pub fn specialize_at(
    model: &TwoTower,
    users: &[u32],
    sets: &[&(Vec<i64>, Vec<i64>)],
    lr: f64,
    margin: f64,
    moving: &Moving,
    step_counts: &[usize],
) -> Vec<(Tensor, Tensor)> {
    assert!(step_counts.windows(2).all(|w| w[0] < w[1]), "step counts must ascend");
    let fixed = moving.fixed();
    let dev = model.device;
    // With fixed item vectors the item part of every gradient is zero, so Adam leaves the item
    // parameters exactly as they are.
    let mut owner = Vec::new();
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (k, (p, n)) in sets.iter().enumerate() {
        owner.extend(std::iter::repeat_n(k as i64, p.len()));
        pos.extend_from_slice(p);
        neg.extend_from_slice(n);
    }
    let user_ids = Tensor::from_slice(&users.iter().map(|&u| u as i64).collect::<Vec<_>>()).to_device(dev);
    let read = |w: &Tensor| {
        tch::no_grad(|| {
            let p = model.params.views(w);
            let items = fixed.map_or_else(|| model.all_item_vectors(&p), |v| v.shallow_clone());
            (model.user_vectors(&p, &user_ids), items)
        })
    };
    let mut out = Vec::with_capacity(step_counts.len());
    if pos.is_empty() {
        // Nothing to adapt on: every step count reads the shard model as is.
        let v = read(&model.params.flat);
        return step_counts.iter().map(|_| (v.0.shallow_clone(), v.1.shallow_clone())).collect();
    }
    let owner = Tensor::from_slice(&owner).to_device(dev);
    let items = Tensor::from_slice(&[pos.as_slice(), neg.as_slice()].concat()).to_device(dev);
    let m = pos.len() as i64;
    let fixed_set = fixed.map(|v| gather_rows(v, &items));
    let pair_loss = |u: &Tensor, v: &Tensor| {
        let s_pos = (u * v.narrow(0, 0, m)).sum_dim_intlist(1, false, Kind::Float);
        let s_neg = (u * v.narrow(0, m, m)).sum_dim_intlist(1, false, Kind::Float);
        hinge(&s_pos, &s_neg, margin)
    };
    // What moves (a flat tensor), the set's loss as a function of it, and the vectors it gives.
    type Of<'f, T> = Box<dyn Fn(&Tensor) -> T + 'f>;
    let (start, loss, vectors): (Tensor, Of<Tensor>, Of<(Tensor, Tensor)>) = match moving {
        // The users' final vectors themselves [n x d]: each user's gradient comes from its own
        // pairs alone.
        Moving::UserVectors(kept) => {
            let v = fixed_set.as_ref().expect("kept item vectors");
            (
                read(&model.params.flat).0.copy(),
                Box::new(move |w| pair_loss(&gather_rows(w, &owner), v)),
                Box::new(move |w| (w.detach().copy(), kept.shallow_clone())),
            )
        }
        Moving::All | Moving::UserSide(_) => (
            model.params.copy(),
            Box::new(|w| {
                let p = model.params.views(w);
                let u = gather_rows(&model.user_vectors(&p, &user_ids), &owner);
                let v = fixed_set.as_ref().map_or_else(|| model.item_vectors(&p, &items), |v| v.shallow_clone());
                pair_loss(&u, &v)
            }),
            Box::new(|w| read(w)),
        ),
    };
    let mut adapted = start.set_requires_grad(true);
    let mut adam = Adam::new(&adapted, lr);
    let mut done = 0;
    for &target in step_counts {
        while done < target {
            let l = loss(&adapted);
            let g = Tensor::run_backward(&[&l], &[&adapted], false, false).remove(0);
            adam.step(&mut adapted, &g);
            done += 1;
        }
        out.push(vectors(&adapted));
    }
    out
}

/// Top-K of every user of one cluster: `x` [n x S*d] (already divided by S), `y` [I x S*d].
/// `seen[k]` are the sorted training items of the k-th user. Entries come best first, ties by
/// item id; users with fewer than K unseen items get what exists.
pub fn top_k(x: &Tensor, y: &Tensor, seen: &[&[u32]], k: usize, batch: usize) -> Vec<Vec<(u32, f32)>> {
    let n_items = y.size()[0];
    let batch = batch.max(1);
    let yt = y.transpose(0, 1).contiguous();
    let take = (k as i64).min(n_items);
    let chunk = |b: usize| &seen[b * batch..((b + 1) * batch).min(seen.len())];
    // Flat indices of one batch's seen items in its [rows x items] score tile (built on the host).
    let mask = |b: usize| -> Vec<i64> {
        chunk(b)
            .iter()
            .enumerate()
            .flat_map(|(r, items)| items.iter().map(move |&i| r as i64 * n_items + i as i64))
            .collect()
    };
    // Queues one batch's product, mask and selection (asynchronous on a GPU).
    let launch = |b: usize, mask: Vec<i64>| -> (Tensor, Tensor) {
        let scores = x.narrow(0, (b * batch) as i64, chunk(b).len() as i64).mm(&yt);
        if !mask.is_empty() {
            let mut flat = scores.view([-1]);
            let idx = Tensor::from_slice(&mask).to_device(scores.device());
            let _ = flat.index_fill_(0, &idx, f64::NEG_INFINITY);
        }
        scores.topk(take, 1, true, true)
    };
    let batches = seen.len().div_ceil(batch);
    let mut out = Vec::with_capacity(seen.len());
    tch::no_grad(|| {
        let mut next = (batches > 0).then(|| launch(0, mask(0)));
        for b in 0..batches {
            let (values, indices) = next.take().expect("launched");
            // Pipelined: the host builds the next mask while the device works on this batch,
            // and turns this batch into lists while the device works on the next one.
            let next_mask = (b + 1 < batches).then(|| mask(b + 1));
            let values = Vec::<f32>::try_from(values.to_device(Device::Cpu).flatten(0, 1)).expect("f32 scores");
            // Item ids fit in i32 (half the bytes to copy back).
            let indices = Vec::<i32>::try_from(indices.to_kind(Kind::Int).to_device(Device::Cpu).flatten(0, 1))
                .expect("i32 indices");
            if let Some(m) = next_mask {
                next = Some(launch(b + 1, m));
            }
            for (row_values, row_indices) in values.chunks(take as usize).zip(indices.chunks(take as usize)) {
                let mut list: Vec<(u32, f32)> = row_indices
                    .iter()
                    .zip(row_values)
                    .filter(|(_, s)| s.is_finite())
                    .map(|(&i, &s)| (i as u32, s))
                    .collect();
                // topk orders by score; equal scores are put in item order.
                if list.windows(2).any(|w| w[0].1 == w[1].1) {
                    list.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                }
                out.push(list);
            }
        }
    });
    out
}

/// The K most popular items (training degree, ties by item id), scored by their degree.
pub fn popular(degree: &[u32], k: usize) -> Vec<(u32, f32)> {
    let mut items: Vec<u32> = (0..degree.len() as u32).collect();
    items.sort_by(|&a, &b| degree[b as usize].cmp(&degree[a as usize]).then(a.cmp(&b)));
    items.truncate(k);
    items.into_iter().map(|i| (i, degree[i as usize] as f32)).collect()
}

/// Per-shard facts of a run, for its manifest.
#[derive(Debug, Clone, Serialize)]
pub struct ShardRun {
    pub index: usize,
    pub lineage: String,
    pub model_sha256: String,
    pub users: usize,
    pub clusters: usize,
    pub labels_file: String,
    /// True when the labels came from the cache (model and settings unchanged).
    pub labels_cached: bool,
}

/// What an inference produced, before writing.
pub struct Inference {
    /// One entry per user of the dataset (internal id order).
    pub recs: Vec<UserTopK>,
    pub shards: Vec<ShardRun>,
    pub consensus: ConsensusMethod,
    pub clusters: usize,
    /// Seconds per stage: embed + cluster, consensus, adapt, score.
    pub seconds: Vec<(&'static str, f64)>,
}

/// Clusters of the consensus: for each cluster, its users ascending.
pub fn members(labels: &[Option<u32>]) -> Vec<Vec<u32>> {
    let k = labels.iter().flatten().map(|&l| l as usize + 1).max().unwrap_or(0);
    let mut out = vec![Vec::new(); k];
    for (u, l) in labels.iter().enumerate() {
        if let Some(l) = l {
            out[*l as usize].push(u as u32);
        }
    }
    out
}

/// Mean-over-shards inputs of one cluster: x [n x S*d] / S and y [I x S*d], from each shard's
/// specialized model; `moving[s]` is [`Moving::of`] shard model `s` under `adapt.scope`, built
/// once for every cluster.
pub fn cluster_vectors(
    models: &[&TwoTower],
    moving: &[Moving],
    users: &[u32],
    history: &History,
    config: &Config,
    steps: usize,
) -> (Tensor, Tensor) {
    let sets: Vec<(Vec<i64>, Vec<i64>)> = users.iter().map(|&u| history.adaptation_set(u, config)).collect();
    let refs: Vec<&(Vec<i64>, Vec<i64>)> = sets.iter().collect();
    let (xs, ys): (Vec<Tensor>, Vec<Tensor>) = models
        .iter()
        .zip(moving)
        .map(|(m, moving)| specialize(m, users, &refs, config.adapt.learning_rate, config.train.margin, moving, steps))
        .unzip();
    let s = models.len() as f64;
    (Tensor::cat(&xs, 1) / s, Tensor::cat(&ys, 1))
}

/// Runs steps 1-5 over the store's trained shard models; on the CPU, scoring uses `cpu_threads`
/// libtorch threads.
pub fn infer(
    store: &Store,
    p: &Prepared,
    models: &[ShardModel],
    config: &Config,
    cpu_threads: usize,
) -> Result<Inference> {
    let n_users = p.dataset.users.len();
    let history = History::new(p);
    let c = &config.cluster;

    let start = Instant::now();
    let progress = crate::progress::Progress::new(models.len() as u64, "clustering shards");
    let mut shard_labels_all = Vec::with_capacity(models.len());
    let mut shards = Vec::with_capacity(models.len());
    for m in models {
        let s = kmeans_settings(c, c.clusters, config.seed, Some(m.index));
        let (labels, cached) = shard_labels(store, m, n_users, &s)?;
        info!(shard = m.index, users = m.users.len(), clusters = labels.clusters, cached, "shard clustered");
        shards.push(ShardRun {
            index: m.index,
            lineage: m.lineage.clone(),
            model_sha256: m.model_sha256.clone(),
            users: m.users.len(),
            clusters: labels.clusters,
            labels_file: labels_path(store, m, &s)
                .strip_prefix(store.root())
                .map(|x| x.display().to_string())
                .unwrap_or_default(),
            labels_cached: cached,
        });
        shard_labels_all.push(labels);
        progress.inc(1);
    }
    progress.finish();
    let t_cluster = start.elapsed().as_secs_f64();

    let start = Instant::now();
    let labelled = (0..n_users).filter(|&u| shard_labels_all.iter().any(|s| s.labels[u].is_some())).count();
    let method = consensus_method(c, labelled);
    let consensus = cluster::consensus(&shard_labels_all, &kmeans_settings(c, c.clusters, config.seed, None), method)?;
    let groups = members(&consensus);
    let t_consensus = start.elapsed().as_secs_f64();
    info!(users = labelled, clusters = groups.len(), ?method, seconds = format!("{t_consensus:.2}"), "consensus");

    let mut recs: Vec<Option<UserTopK>> = vec![None; n_users];
    let progress = crate::progress::Progress::new(groups.len() as u64, "adapting and scoring clusters");
    let refs: Vec<&TwoTower> = models.iter().map(|m| &m.model).collect();
    let (mut t_adapt, mut t_score) = (0.0, 0.0);
    let on_cpu = models.first().is_some_and(|m| m.model.device == Device::Cpu);
    if on_cpu {
        tch::set_num_threads(1);
    }
    let moving: Vec<Moving> = refs.iter().map(|m| Moving::of(m, config.adapt.scope)).collect();
    for (cl, users) in groups.iter().enumerate() {
        let start = Instant::now();
        // Adaptation is many small ops: one libtorch thread is fastest (and never oversubscribes
        // a busy machine); scoring is one large matrix product per batch: `cpu_threads`.
        if on_cpu {
            tch::set_num_threads(1);
        }
        let (x, y) = cluster_vectors(&refs, &moving, users, &history, config, config.infer.adapt_steps);
        t_adapt += start.elapsed().as_secs_f64();
        if on_cpu {
            tch::set_num_threads(cpu_threads.max(1) as i32);
        }
        let start = Instant::now();
        let seen: Vec<&[u32]> = users.iter().map(|&u| history.train_items[u as usize].as_slice()).collect();
        let lists = top_k(&x, &y, &seen, config.infer.top_k, config.infer.batch_users);
        for (&u, list) in users.iter().zip(lists) {
            let (items, scores) = list.into_iter().unzip();
            recs[u as usize] = Some(UserTopK { items, scores, cluster: Some(cl as u32), source: Source::Personalized });
        }
        t_score += start.elapsed().as_secs_f64();
        progress.inc(1);
    }
    progress.finish();
    let fallback = popular(&history.degree, config.infer.top_k);
    let (items, scores): (Vec<u32>, Vec<f32>) = fallback.into_iter().unzip();
    let recs = recs
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| UserTopK {
                items: items.clone(),
                scores: scores.clone(),
                cluster: None,
                source: Source::Fallback,
            })
        })
        .collect();
    Ok(Inference {
        recs,
        shards,
        consensus: method,
        clusters: groups.len(),
        seconds: vec![
            ("embed_and_cluster", t_cluster),
            ("consensus", t_consensus),
            ("adapt", t_adapt),
            ("score", t_score),
        ],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_masks_seen_items_orders_ties_by_item_and_stops_at_the_unseen_ones() {
        // 2 users x 2 "shards" of width 1; 4 items.
        let x = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).reshape([2, 2]);
        let y = Tensor::from_slice(&[0.5f32, 9.0, 2.0, 1.0, 2.0, 3.0, 1.0, 0.0]).reshape([4, 2]);
        // user 0 scores 0.5, 2, 2, 1 (item 1 and 2 tie); user 1 scores 9, 1, 3, 0.
        let seen: Vec<&[u32]> = vec![&[], &[0, 2, 3]];
        let lists = top_k(&x, &y, &seen, 3, 1);
        assert_eq!(lists[0], vec![(1, 2.0), (2, 2.0), (3, 1.0)]);
        // user 1 has one unseen item left.
        assert_eq!(lists[1], vec![(1, 1.0)]);
    }

    #[test]
    fn popular_items_by_degree_then_id() {
        assert_eq!(popular(&[3, 5, 5, 0], 3), vec![(1, 5.0), (2, 5.0), (0, 3.0)]);
        assert_eq!(popular(&[1], 3), vec![(0, 1.0)]);
    }

    #[test]
    fn adaptation_sets_avoid_positives_and_the_validation_item_and_favour_rare_items() {
        // item 0 is rare (degree 1), item 1 common (degree 100): at T = 0.01 only item 0 is drawn.
        let degree = [1u32, 100, 5, 5, 5];
        let (pos, neg) = adaptation_set(7, &[0, 1], Some(2), &degree, 0, 7, 7, 0.01);
        assert_eq!(pos, vec![0; 7]);
        assert!(neg.iter().all(|&i| i == 3 || i == 4), "{neg:?}");
        // same key, same set; another user, another stream
        assert_eq!(adaptation_set(7, &[0, 1], Some(2), &degree, 0, 7, 7, 0.01).1, neg);
        assert!(adaptation_set(7, &[], None, &degree, 0, 7, 7, 0.01).0.is_empty());
    }

    #[test]
    fn fewer_negatives_are_the_first_of_the_full_draw_repeated_in_turn() {
        let degree = vec![3u32; 200];
        let items = [5u32, 9, 40];
        let (pos, full) = adaptation_set(3, &items, Some(7), &degree, 11, 12, 12, 100.0);
        let (pos3, three) = adaptation_set(3, &items, Some(7), &degree, 11, 12, 3, 100.0);
        assert_eq!(pos3, pos, "the items do not depend on the number of negatives");
        assert_eq!(three.len(), 12);
        for (i, &n) in three.iter().enumerate() {
            assert_eq!(n, full[i % 3], "negative {i}");
        }
        // 12 uniform draws from 196 candidates: some two of the first three differ, or the test
        // would not see the repetition.
        assert!(three[0] != three[1] || three[1] != three[2], "{three:?}");
        assert!(full.iter().all(|&i| !items.contains(&(i as u32)) && i != 7), "{full:?}");
        // 2,000 draws from 196 candidates: the validation item is kept out, and without one to
        // keep out, item 7 is a candidate like any other (missed with probability e^-10).
        let kept_out = adaptation_set(3, &items, Some(7), &degree, 11, 2000, 2000, 100.0).1;
        assert!(!kept_out.contains(&7));
        let allowed = adaptation_set(3, &items, None, &degree, 11, 2000, 2000, 100.0).1;
        assert!(allowed.contains(&7));
    }

    /// A two-tower model of 3 users and 6 items, one categorical feature a side, d = 5.
    fn tiny_model() -> TwoTower {
        use crate::data::{Entities, Feature, Ids};
        let entities = |ids: Vec<i64>, labels: &[&str]| {
            let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
            Entities { ids: Ids::Int(ids), features: vec![Feature::categorical("f", &labels)] }
        };
        let config = crate::config::ModelConfig {
            feature_dim: 4,
            user_tower: vec![8],
            item_tower: vec![6],
            embedding_dim: 5,
            ..Default::default()
        };
        let users = entities(vec![1, 2, 3], &["a", "b", "a"]);
        let items = entities(vec![10, 11, 12, 13, 14, 15], &["x", "y", "x", "y", "x", "y"]);
        TwoTower::new(&config, &users, &items, &[true, true, true], 0, 0, Device::Cpu)
    }

    #[test]
    fn a_user_scope_adaptation_moves_the_user_vector_and_leaves_every_item_vector() {
        let model = tiny_model();
        let set = (vec![1i64, 2, 3], vec![4i64, 5, 0]);
        let (base_u, base_items) =
            specialize(&model, &[1], &[&set], 1e-2, 1.0, &Moving::of(&model, AdaptScope::User), 0);
        let loss = |u: &Tensor| {
            let v = |ids: &[i64]| base_items.index_select(0, &Tensor::from_slice(ids));
            let s = |ids: &[i64]| (u * v(ids)).sum_dim_intlist(1, false, Kind::Float);
            hinge(&s(&set.0), &s(&set.1), 1.0).double_value(&[])
        };
        let moving = Moving::of(&model, AdaptScope::User);
        let fixed = moving.fixed().expect("scope user keeps the item vectors");
        assert!(fixed.equal(&base_items));
        assert!(Moving::of(&model, AdaptScope::All).fixed().is_none());
        let user = specialize_at(&model, &[1], &[&set], 1e-2, 1.0, &moving, &[1, 3]);
        for (u, items) in &user {
            assert!(items.equal(&base_items), "an item vector moved under scope user");
            assert!(!u.equal(&base_u), "the user vector did not move");
        }
        assert!(loss(&user[1].0) < loss(&base_u), "{} >= {}", loss(&user[1].0), loss(&base_u));
        // Scope all moves the item side too; the shard model itself is never changed.
        let (_, all_items) = specialize(&model, &[1], &[&set], 1e-2, 1.0, &Moving::of(&model, AdaptScope::All), 1);
        assert!(!all_items.equal(&base_items));
        assert!(specialize(&model, &[1], &[&set], 1e-2, 1.0, &Moving::of(&model, AdaptScope::User), 0)
            .1
            .equal(&base_items));
    }

    #[test]
    fn a_vector_scope_adaptation_takes_adam_steps_on_the_user_vector_alone() {
        let model = tiny_model();
        let moving = Moving::of(&model, AdaptScope::Vector);
        let fixed = moving.fixed().expect("scope vector keeps the item vectors");
        // User 1 adapts on two pairs; user 2, a cluster member without pairs, keeps its vector.
        let set = (vec![1i64, 2], vec![4i64, 5]);
        let none = (vec![], vec![]);
        let base = specialize_at(&model, &[1, 2], &[&set, &none], 0.1, 1.0, &moving, &[0]);
        let (u0, items0) = &base[0];
        assert!(items0.equal(fixed));
        let lr = 0.1;
        let out = specialize_at(&model, &[1, 2], &[&set, &none], lr, 1.0, &moving, &[1]);
        let (u1, items1) = &out[0];
        assert!(items1.equal(fixed), "an item vector moved under scope vector");
        assert!(u1.get(1).equal(&u0.get(1)), "a user without pairs moved");
        // By hand: the hinge's gradient for user 1 is the mean over its active pairs of
        // (v_neg - v_pos); Adam's first step moves each coordinate by lr g / (|g| + 1e-8).
        let u = Vec::<f32>::try_from(u0.get(0)).expect("f32");
        let v = |i: usize| Vec::<f32>::try_from(fixed.get(i as i64)).expect("f32");
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        let mut grad = vec![0f32; u.len()];
        for (p, n) in [(1, 4), (2, 5)] {
            if 1.0 - (dot(&u, &v(p)) - dot(&u, &v(n))) > 0.0 {
                for (g, (a, b)) in grad.iter_mut().zip(v(n).iter().zip(v(p))) {
                    *g += (a - b) / 2.0;
                }
            }
        }
        assert!(grad.iter().any(|g| g.abs() > 1e-6), "no active pair: the check would be empty");
        let moved = Vec::<f32>::try_from(u1.get(0)).expect("f32");
        for ((after, before), g) in moved.iter().zip(&u).zip(&grad) {
            let expected = before - lr as f32 * g / (g.abs() + 1e-8);
            assert!((after - expected).abs() < 1e-4, "{after} != {expected}");
        }
        // The shard model itself is never changed.
        let again = specialize_at(&model, &[1, 2], &[&set, &none], lr, 1.0, &moving, &[0]);
        assert!(again[0].0.equal(u0));
    }

    #[test]
    fn members_group_users_by_label() {
        assert_eq!(members(&[Some(1), None, Some(0), Some(1)]), vec![vec![2], vec![0, 3]]);
    }
}
