//! `eemu evaluate`: temporal leave-one-out with full ranking over all items (the user's training
//! items masked, ties broken by item order), HR@K and NDCG@K for K = 10 and 20 over every user
//! with a test item. Methods compared on the same split and seed:
//!
//! - `popularity`: every user gets the items in order of training degree (no model, no
//!   training): the floor a trained method has to clear;
//! - `retrain`: one model on all training rows, plain training (the gold standard);
//! - `mean`: the store's S shards, plain training, mean of the shard scores;
//! - `eemu`: the store's S shards with the configured algorithm, mean of the shard scores;
//! - `eemu-adapt`: the `eemu` models with per-user adaptation at inference (paper Algorithm 2);
//! - `mean-adapt`: the `mean` models with the same per-user adaptation, a control that tells the
//!   adaptation's gain apart from the meta-training's (not in the paper);
//! - `eemu-batch-K`: the `eemu` models in batch mode with K consensus clusters (Algorithm 3).
//!
//! The epoch of every method is chosen on the validation item (ensemble HR@10), never on the
//! test item; the test metrics reported are those of that epoch.
use std::time::Instant;

use anyhow::{bail, Result};
use rayon::prelude::*;
use serde::Serialize;
use tch::{Device, Tensor};
use tracing::info;

use crate::config::{AdaptConfig, AdaptScope, Algorithm, Config};
use crate::data::split::Split;
use crate::model::TwoTower;
use crate::store::Prepared;
use crate::train::{train_epoch, Adam, ShardData};

mod checkpoint;

/// Evaluation targets: per evaluated user, the validation and test item and the masked items.
pub struct Targets {
    pub users: Vec<u32>,
    pub valid: Vec<Option<u32>>,
    pub test: Vec<u32>,
    /// Sorted training items of each evaluated user (all shards).
    pub train_items: Vec<Vec<u32>>,
    pub n_items: usize,
    /// Training degree of every item (number of training rows).
    pub degree: Vec<u32>,
}

impl Targets {
    /// The users with a test item, from the data's history (see [`crate::infer::History`]).
    pub fn new(p: &Prepared) -> Result<Targets> {
        let h = crate::infer::History::new(p);
        let x = &p.dataset.interactions;
        let mut test = vec![None; p.dataset.users.len()];
        for r in (0..x.len()).filter(|&r| p.split[r] == Split::Test) {
            test[x.user[r] as usize] = Some(x.item[r]);
        }
        let users: Vec<u32> = (0..test.len() as u32).filter(|&u| test[u as usize].is_some()).collect();
        if users.is_empty() {
            bail!("the store has no test rows: ingest with [split] mode = \"leave-one-out\" to evaluate");
        }
        Ok(Targets {
            valid: users.iter().map(|&u| h.validation[u as usize]).collect(),
            test: users.iter().filter_map(|&u| test[u as usize]).collect(),
            train_items: users.iter().map(|&u| h.train_items[u as usize].clone()).collect(),
            users,
            n_items: h.n_items,
            degree: h.degree,
        })
    }
}

/// HR@K and NDCG@K (fractions, not percent) for K = 10 and 20, with standard errors:
/// sqrt(p (1 - p) / n) for HR, the sample standard error of the per-user gains for NDCG.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Metrics {
    pub hr10: f64,
    pub hr10_se: f64,
    pub ndcg10: f64,
    pub ndcg10_se: f64,
    pub hr20: f64,
    pub hr20_se: f64,
    pub ndcg20: f64,
    pub ndcg20_se: f64,
    pub users: usize,
}

impl Metrics {
    /// From 0-based ranks of the held-out items.
    pub fn from_ranks(ranks: &[usize]) -> Metrics {
        let n = ranks.len().max(1) as f64;
        let hr = |k: usize| {
            let p = ranks.iter().filter(|&&r| r < k).count() as f64 / n;
            (p, (p * (1.0 - p) / n).sqrt())
        };
        let ndcg = |k: usize| {
            let gains: Vec<f64> = ranks.iter().map(|&r| crate::compare::ndcg_gain(r as u64, k)).collect();
            let mean = gains.iter().sum::<f64>() / n;
            let var = if gains.len() > 1 {
                gains.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (gains.len() - 1) as f64
            } else {
                0.0
            };
            (mean, (var / n).sqrt())
        };
        let ((hr10, hr10_se), (hr20, hr20_se)) = (hr(10), hr(20));
        let ((ndcg10, ndcg10_se), (ndcg20, ndcg20_se)) = (ndcg(10), ndcg(20));
        Metrics { hr10, hr10_se, ndcg10, ndcg10_se, hr20, hr20_se, ndcg20, ndcg20_se, users: ranks.len() }
    }
}

/// 0-based rank of `target` among `scores`, skipping `masked` items (sorted); ties go to the
/// item that comes first.
pub fn rank_of(scores: &[f32], target: usize, masked: &[u32]) -> usize {
    let t = scores[target];
    if t.is_nan() {
        // No score is no evidence: the held-out item ranks last among the candidates.
        return (0..scores.len()).filter(|&i| i != target && masked.binary_search(&(i as u32)).is_err()).count();
    }
    scores
        .iter()
        .enumerate()
        .filter(|&(i, &s)| {
            i != target && (s > t || (s == t && i < target)) && masked.binary_search(&(i as u32)).is_err()
        })
        .count()
}

/// Ranks of the validation and test items of every evaluated user under mean scores
/// [evaluated users x items], row-major.
fn ranks(scores: &[f32], t: &Targets) -> (Vec<usize>, Vec<usize>) {
    let n = t.n_items;
    ranks_by(t, |k| &scores[k * n..(k + 1) * n])
}

/// Ranks of the validation and test items of every evaluated user, `row(k)` scoring every item
/// for the k-th evaluated user.
fn ranks_by<'a>(t: &Targets, row: impl Fn(usize) -> &'a [f32]) -> (Vec<usize>, Vec<usize>) {
    let mut valid = Vec::new();
    let mut test = Vec::with_capacity(t.users.len());
    for k in 0..t.users.len() {
        let row = row(k);
        if let Some(v) = t.valid[k] {
            valid.push(rank_of(row, v as usize, &t.train_items[k]));
        }
        test.push(rank_of(row, t.test[k] as usize, &t.train_items[k]));
    }
    (valid, test)
}

/// Scores [evaluated users x items] of one model without adaptation, row-major.
fn model_scores(model: &TwoTower, t: &Targets) -> Vec<f32> {
    tch::no_grad(|| {
        let p = model.params.views(&model.params.flat);
        let items = model.all_item_vectors(&p);
        let users: Vec<i64> = t.users.iter().map(|&u| u as i64).collect();
        let u = model.user_vectors(&p, &Tensor::from_slice(&users).to_device(model.device));
        Vec::<f32>::try_from(u.matmul(&items.transpose(0, 1)).to_device(Device::Cpu).flatten(0, 1)).expect("f32 scores")
    })
}

/// Per-user adaptation (Algorithm 2) for one shard model at step size `lr`: scores of every
/// evaluated user after each step count of `step_counts` (ascending), one score matrix per
/// step count. Each user is a cluster of one for [`crate::infer::specialize_at`]; a user without
/// training items has an empty adaptation set and is scored by the shard model as is.
fn adapted_scores(
    model: &TwoTower,
    t: &Targets,
    sets: &[(Vec<i64>, Vec<i64>)],
    lr: f64,
    margin: f64,
    scope: AdaptScope,
    step_counts: &[usize],
) -> Vec<Vec<f32>> {
    let n = t.n_items;
    let mut out = vec![vec![0f32; t.users.len() * n]; step_counts.len()];
    let moving = crate::infer::Moving::of(model, scope);
    for (k, &user) in t.users.iter().enumerate() {
        let points = crate::infer::specialize_at(model, &[user], &[&sets[k]], lr, margin, &moving, step_counts);
        for (c, (u, items)) in points.into_iter().enumerate() {
            let row = tch::no_grad(|| u.matmul(&items.transpose(0, 1)).to_device(Device::Cpu).flatten(0, 1));
            out[c][k * n..(k + 1) * n].copy_from_slice(&Vec::<f32>::try_from(row).expect("f32 scores"));
        }
    }
    out
}

/// Every evaluated user's adaptation set: (items, negatives), in `Targets` order.
pub type AdaptationSets = Vec<(Vec<i64>, Vec<i64>)>;

/// Adaptation sets of the evaluated users under setting `s` (see
/// [`crate::infer::adaptation_set`]); the validation item is kept out of the negatives unless
/// `s.validation_as_negative`.
pub fn adaptation_sets(t: &Targets, seed: u64, s: &AdaptSetting) -> AdaptationSets {
    t.users
        .iter()
        .enumerate()
        .map(|(k, &user)| {
            let valid = if s.validation_as_negative { None } else { t.valid[k] };
            let (degree, items) = (&t.degree, &t.train_items[k]);
            crate::infer::adaptation_set(user, items, valid, degree, seed, s.set_size, s.negatives, s.temperature)
        })
        .collect()
}

/// One method's result.
#[derive(Debug, Clone, Serialize)]
pub struct MethodResult {
    pub method: String,
    pub shards: usize,
    /// The training algorithm; none for `popularity`, which trains nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<Algorithm>,
    /// Epoch chosen on the validation item (0 for `popularity`).
    pub epoch: usize,
    pub validation: Metrics,
    pub test: Metrics,
    /// Validation HR@10 after every evaluated epoch.
    pub validation_curve: Vec<(usize, f64)>,
    pub train_seconds: f64,
    /// The per-user adaptation of an `eemu-adapt` row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptation: Option<AdaptSetting>,
    /// An `eemu-adapt(..)` row: one setting of the adaptation grid, listed beside the
    /// `eemu-adapt` row that holds the setting chosen on validation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub candidate: bool,
    /// 0-based test rank of every evaluated user (in `Targets` order), for `--ranks-out`.
    #[serde(skip)]
    pub test_ranks: Vec<usize>,
    /// 0-based validation rank of every evaluated user with a validation item (in `Targets`
    /// order), for `--ranks-out`.
    #[serde(skip)]
    pub validation_ranks: Vec<usize>,
}

/// One setting of per-user adaptation: the fresh Adam's step size and its number of steps,
/// the adaptation set's sampling temperature, size and negatives, and the parameters it moves.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AdaptSetting {
    pub learning_rate: f64,
    pub steps: usize,
    pub temperature: f64,
    pub set_size: usize,
    /// Uniform negatives drawn into each set (1 to `set_size`; `set_size`: one per item).
    pub negatives: usize,
    pub scope: AdaptScope,
    /// Whether the user's validation item may be drawn as a negative, as the test item may.
    /// False (the reference): it is kept out, which the test item cannot be, so validation then
    /// never sees the adaptation push its item down.
    pub validation_as_negative: bool,
}

/// The values of an adaptation grid to try, each list empty for the config's value.
#[derive(Debug, Clone, Default)]
pub struct AdaptGrid<'a> {
    pub learning_rates: &'a [f64],
    pub steps: &'a [usize],
    pub temperatures: &'a [f64],
    pub set_sizes: &'a [usize],
    /// Negatives drawn per set (each at most the set size); empty: adapt.negatives.
    pub negatives: &'a [usize],
    pub scopes: &'a [AdaptScope],
    /// For every setting: see [`AdaptSetting::validation_as_negative`].
    pub validation_as_negative: bool,
}

impl AdaptSetting {
    /// The settings of temperatures x set sizes x negatives x scopes x rates x steps, in that
    /// order (temperatures outermost), duplicates dropped. An empty list stands for the config's
    /// value, so with all empty the grid is the config's setting alone. Negatives more than a set
    /// size are an error.
    pub fn grid(g: &AdaptGrid, c: &AdaptConfig) -> Result<Vec<AdaptSetting>> {
        fn or<T: Copy>(given: &[T], default: T) -> Vec<T> {
            if given.is_empty() {
                vec![default]
            } else {
                given.to_vec()
            }
        }
        let mut grid = Vec::new();
        for &temperature in &or(g.temperatures, c.temperature) {
            for &set_size in &or(g.set_sizes, c.set_size) {
                for &negatives in &or(g.negatives, c.negatives_for(set_size)) {
                    if !(1..=set_size).contains(&negatives) {
                        bail!(
                            "adaptation negatives (--adapt-negatives or adapt.negatives) must be 1 to the set size \
                             ({set_size}), got {negatives}"
                        );
                    }
                    for &scope in &or(g.scopes, c.scope) {
                        for &learning_rate in &or(g.learning_rates, c.learning_rate) {
                            for &steps in &or(g.steps, c.steps) {
                                let s = AdaptSetting {
                                    learning_rate,
                                    steps,
                                    temperature,
                                    set_size,
                                    negatives,
                                    scope,
                                    validation_as_negative: g.validation_as_negative,
                                };
                                if !grid.contains(&s) {
                                    grid.push(s);
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(grid)
    }

    /// The config's own setting.
    pub fn of_config(c: &AdaptConfig) -> AdaptSetting {
        AdaptSetting {
            learning_rate: c.learning_rate,
            steps: c.steps,
            temperature: c.temperature,
            set_size: c.set_size,
            negatives: c.negatives_drawn(),
            scope: c.scope,
            validation_as_negative: false,
        }
    }

    /// Whether `other` draws the same adaptation sets (temperature, set size, negatives and the
    /// validation item's place), whatever its step size, steps and scope.
    fn draws_sets_as(&self, other: &AdaptSetting) -> bool {
        self.temperature == other.temperature
            && self.set_size == other.set_size
            && self.negatives == other.negatives
            && self.validation_as_negative == other.validation_as_negative
    }

    /// The row name of this setting when it is one candidate of a grid of `method` (`eemu-adapt`
    /// or `mean-adapt`); the temperature, set size, negatives and scope are named only where they
    /// differ from the config's `c` (negatives: from one per item when adapt.negatives is 0).
    pub fn method_name(&self, method: &str, c: &AdaptConfig) -> String {
        let mut name = format!("{method}(lr={},steps={}", self.learning_rate, self.steps);
        if self.temperature.to_bits() != c.temperature.to_bits() {
            name.push_str(&format!(",T={}", self.temperature));
        }
        if self.set_size != c.set_size {
            name.push_str(&format!(",set={}", self.set_size));
        }
        if self.negatives != c.negatives_for(self.set_size) {
            name.push_str(&format!(",neg={}", self.negatives));
        }
        if self.scope != c.scope {
            name.push_str(&format!(",scope={}", self.scope.name()));
        }
        name + ")"
    }
}

/// Every method `eemu evaluate` knows, in the order the table lists them.
pub const METHODS: [&str; 7] = ["popularity", "retrain", "mean", "mean-adapt", "eemu", "eemu-adapt", "eemu-batch"];

/// Each trained method whose models the per-user adaptation is run on, with the name of its
/// adapted row (in the order the table's settings lines are written).
const ADAPTED: [(&str, &str); 2] = [("eemu", "eemu-adapt"), ("mean", "mean-adapt")];

/// The adapted row of trained method `name`, if it has one.
fn adapted_of(name: &str) -> Option<&'static str> {
    ADAPTED.iter().find(|(m, _)| *m == name).map(|&(_, a)| a)
}

/// Settings of an evaluation run.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub epochs: usize,
    pub eval_every: usize,
    pub methods: Vec<String>,
    pub device: Device,
    pub jobs: usize,
    /// Consensus cluster counts K of the `eemu-batch` method (one result per K).
    pub batch_clusters: Vec<usize>,
    /// Per-user adaptation settings tried by `eemu-adapt`, all on the same models; the one with
    /// the best validation HR@10 (the first listed on a tie) is the `eemu-adapt` row. Empty: the
    /// config's `[adapt]` learning_rate and steps only.
    pub adapt_grid: Vec<AdaptSetting>,
    /// Folder of the trained methods' checkpoints (see the `checkpoint` module): written after
    /// every evaluation, read at the start to go on from there; it also keeps the ranks of the
    /// per-user adaptation grid of the chosen `eemu` models. None: no checkpoints.
    pub checkpoint_dir: Option<std::path::PathBuf>,
}

fn mean_scores(parts: Vec<Vec<f32>>) -> Vec<f32> {
    let k = parts.len() as f32;
    let mut it = parts.into_iter();
    let mut sum = it.next().expect("at least one shard");
    for p in it {
        sum.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
    }
    sum.iter_mut().for_each(|a| *a /= k);
    sum
}

/// The epoch chosen on validation so far, with the shard weights of that epoch.
struct BestEpoch {
    epoch: usize,
    validation: Metrics,
    test: Metrics,
    /// 0-based validation rank of every evaluated user with a validation item at that epoch.
    validation_ranks: Vec<usize>,
    /// 0-based test rank of every evaluated user at that epoch.
    test_ranks: Vec<usize>,
    /// Every shard model's flat parameter vector at that epoch.
    snapshot: Vec<Tensor>,
}

impl BestEpoch {
    /// The metrics are those of the ranks, derived here once.
    fn new(epoch: usize, validation_ranks: Vec<usize>, test_ranks: Vec<usize>, snapshot: Vec<Tensor>) -> Self {
        let (validation, test) = (Metrics::from_ranks(&validation_ranks), Metrics::from_ranks(&test_ranks));
        BestEpoch { epoch, validation, test, validation_ranks, test_ranks, snapshot }
    }
}

/// One trained method of an evaluation.
struct TrainedMethod {
    name: &'static str,
    algorithm: Algorithm,
    /// One model on all training rows (RETRAIN) instead of one per shard.
    one_shard: bool,
    /// Its checkpoint identity, built once (it hashes the targets and reads the CPU's model).
    identity: checkpoint::Identity,
}

/// Trains one method's shard models, choosing the epoch on validation. Returns the result and
/// the chosen models.
fn run_method(
    method: &TrainedMethod,
    p: &Prepared,
    t: &Targets,
    o: &EvalOptions,
    pool: &rayon::ThreadPool,
) -> Result<(MethodResult, Vec<TwoTower>)> {
    let TrainedMethod { name, algorithm, one_shard, ref identity } = *method;
    let config: &Config = &p.config;
    let mut train_cfg = config.train.clone();
    train_cfg.algorithm = algorithm;
    let shards: Vec<Option<usize>> = if one_shard { vec![None] } else { (0..config.shards.count).map(Some).collect() };
    let start = Instant::now();
    let mut state: Vec<(ShardData, TwoTower, Adam)> = shards
        .iter()
        .map(|&s| {
            let d = ShardData::from_prepared(p, s);
            let m = d.new_model(p, o.device);
            let a = Adam::new(&m.params.flat, train_cfg.learning_rate_at(1));
            (d, m, a)
        })
        .collect();
    let checkpoint_path = o.checkpoint_dir.as_deref().map(|dir| checkpoint::path(dir, name));
    let mut best: Option<BestEpoch> = None;
    let mut curve = Vec::new();
    let mut epoch = 0;
    let mut seconds_before = 0.0;
    if let Some(path) = &checkpoint_path {
        let parameters: Vec<i64> = state.iter().map(|(_, m, _)| m.params.count()).collect();
        if let Some(saved) =
            checkpoint::read(path, identity, o.epochs, &parameters, &|e| train_cfg.learning_rate_at(e), o.device)?
        {
            for ((_, m, a), (weights, adam)) in state.iter_mut().zip(saved.shards) {
                m.params.load(&weights);
                *a = adam;
            }
            info!(
                method = name,
                epoch = saved.epoch,
                chosen_epoch = saved.best.epoch,
                "resuming from {}",
                path.display()
            );
            (epoch, curve, seconds_before, best) = (saved.epoch, saved.curve, saved.train_seconds, Some(saved.best));
        }
    }
    // Training and evaluation time of the method, earlier runs included.
    let seconds = || seconds_before + start.elapsed().as_secs_f64();
    let progress = crate::progress::Progress::new(o.epochs as u64, &format!("{name}: epochs"));
    progress.inc(epoch as u64);
    while epoch < o.epochs {
        let block = o.eval_every.min(o.epochs - epoch);
        let first = epoch + 1;
        state = pool.install(|| {
            state
                .into_par_iter()
                .enumerate()
                .map(|(shard, (d, mut m, mut a))| {
                    for e in first..first + block {
                        // A line per shard and epoch, as `eemu train` writes: a batch log shows a
                        // long run moving between its evaluations.
                        let epoch_start = Instant::now();
                        let loss = train_epoch(&mut m, &d, &train_cfg, &mut a, config.seed, e);
                        info!(
                            method = name,
                            shard,
                            epoch = e,
                            loss = format!("{loss:.4}"),
                            seconds = format!("{:.1}", epoch_start.elapsed().as_secs_f64()),
                            "trained"
                        );
                    }
                    (d, m, a)
                })
                .collect()
        });
        epoch += block;
        progress.inc(block as u64);
        let scores = mean_scores(state.iter().map(|(_, m, _)| model_scores(m, t)).collect());
        let (vr, tr) = ranks(&scores, t);
        let vm = Metrics::from_ranks(&vr);
        curve.push((epoch, vm.hr10));
        if best.as_ref().is_none_or(|b| vm.hr10 > b.validation.hr10) {
            let snapshot = state.iter().map(|(_, m, _)| m.params.copy()).collect();
            best = Some(BestEpoch::new(epoch, vr, tr, snapshot));
        }
        if let Some(path) = &checkpoint_path {
            let shards: Vec<(&Tensor, &Adam)> = state.iter().map(|(_, m, a)| (&m.params.flat, a)).collect();
            checkpoint::write(path, identity, epoch, &curve, seconds(), best.as_ref().expect("just set"), &shards)?;
        }
        // The test metrics of the epoch chosen on validation so far: what the result would be if
        // the run stopped here, so a long run that is cut short still leaves its numbers.
        let BestEpoch { epoch: chosen, test: ct, .. } = best.as_ref().expect("just set");
        info!(
            method = name,
            epoch,
            validation_hr10 = format!("{:.4}", vm.hr10),
            chosen_epoch = chosen,
            test_hr10 = format!("{:.4}", ct.hr10),
            test_ndcg10 = format!("{:.4}", ct.ndcg10),
            test_hr20 = format!("{:.4}", ct.hr20),
            test_ndcg20 = format!("{:.4}", ct.ndcg20),
            seconds = format!("{:.0}", seconds()),
            "evaluated"
        );
    }
    progress.finish();
    let BestEpoch { epoch, validation, test, validation_ranks, test_ranks, snapshot } =
        best.expect("at least one evaluation");
    let mut models: Vec<TwoTower> = state.into_iter().map(|(_, m, _)| m).collect();
    for (m, s) in models.iter_mut().zip(&snapshot) {
        m.params.load(s);
    }
    let result = MethodResult {
        method: name.to_string(),
        shards: shards.len(),
        algorithm: Some(algorithm),
        epoch,
        validation,
        test,
        validation_curve: curve,
        train_seconds: seconds(),
        adaptation: None,
        candidate: false,
        test_ranks,
        validation_ranks,
    };
    Ok((result, models))
}

/// Runs the requested methods on the targets `t` (built once by the caller, who also needs them
/// for `write_ranks` and `paired`).
pub fn evaluate(p: &Prepared, t: &Targets, o: &EvalOptions) -> Result<Vec<MethodResult>> {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(o.jobs.max(1)).build()?;
    let want = |m: &str| o.methods.iter().any(|x| x == m);
    // The trained methods, in the order they run.
    let mut trained = Vec::new();
    let mut add = |name: &'static str, algorithm: Algorithm, one_shard: bool| {
        let shards = if one_shard { 1 } else { p.config.shards.count };
        let identity = checkpoint::Identity::new(p, t, name, algorithm, shards, o);
        trained.push(TrainedMethod { name, algorithm, one_shard, identity });
    };
    if want("retrain") {
        add("retrain", Algorithm::Standard, true);
    }
    // A trained method runs when its own row or one derived from its models is asked for.
    let wanted = |m: &str| want(m) || adapted_of(m).is_some_and(want);
    if wanted("mean") {
        add("mean", Algorithm::Standard, false);
    }
    if wanted("eemu") || want("eemu-batch") {
        add("eemu", p.config.train.algorithm, false);
    }
    if let Some(dir) = &o.checkpoint_dir {
        // A checkpoint that cannot be gone on from fails the run before anything trains.
        for m in &trained {
            checkpoint::check(&checkpoint::path(dir, m.name), &m.identity, o.epochs)?;
        }
    }
    let mut results = Vec::new();
    if want("popularity") {
        results.push(popularity(t));
    }
    for method in &trained {
        let name = method.name;
        let (r, mut models) = run_method(method, p, t, o, &pool)?;
        // `mean` and `eemu` are trained for their derived methods too; their own row only when asked.
        if want(name) {
            results.push(r.clone());
        }
        if let Some(adapted) = adapted_of(name).filter(|a| want(a)) {
            let (found, back) = adapt_grid(p, t, o, &method.identity, models, &pool)?;
            models = back;
            results.extend(adapt_rows(&r, adapted, found, &p.config.adapt));
        }
        if name == "eemu" && want("eemu-batch") {
            for &k in &o.batch_clusters {
                let start = Instant::now();
                let (vr, tr) = batch_ranks(p, t, &models, k)?;
                results.push(derived(&r, format!("eemu-batch-{k}"), vr, tr, start.elapsed().as_secs_f64()));
                info!(clusters = k, seconds = format!("{:.0}", start.elapsed().as_secs_f64()), "batch mode evaluated");
            }
        }
    }
    Ok(results)
}

/// The `popularity` baseline: every user's scores are the items' training degrees (training rows
/// of all shards), so items rank by popularity, ties by item order, the user's training items
/// masked as for every method.
fn popularity(t: &Targets) -> MethodResult {
    let start = Instant::now();
    let scores: Vec<f32> = t.degree.iter().map(|&d| d as f32).collect();
    let (valid, test) = ranks_by(t, |_| &scores);
    MethodResult {
        method: "popularity".to_string(),
        shards: 1,
        algorithm: None,
        epoch: 0,
        validation: Metrics::from_ranks(&valid),
        test: Metrics::from_ranks(&test),
        validation_curve: vec![],
        train_seconds: start.elapsed().as_secs_f64(),
        adaptation: None,
        candidate: false,
        test_ranks: test,
        validation_ranks: valid,
    }
}

/// The ranks of the `eemu` models under one per-user adaptation setting.
struct AdaptRanks {
    setting: AdaptSetting,
    valid: Vec<usize>,
    test: Vec<usize>,
    /// Seconds of the adaptation pass that produced them, up to this setting's step count.
    seconds: f64,
}

/// Per-user adaptation (Algorithm 2) of the `eemu` models at every setting of the grid, in grid
/// order. One pass per (temperature, set size, learning rate) reads every step count of it off
/// one adaptation. With a checkpoint folder, the ranks are kept in its adaptation cache: a pass
/// whose every step count is cached for these very models is read back, not adapted again;
/// `identity` is the `eemu` method's checkpoint identity, part of the cache key.
fn adapt_grid(
    p: &Prepared,
    t: &Targets,
    o: &EvalOptions,
    identity: &checkpoint::Identity,
    mut models: Vec<TwoTower>,
    pool: &rayon::ThreadPool,
) -> Result<(Vec<AdaptRanks>, Vec<TwoTower>)> {
    let c = &p.config;
    let grid = if o.adapt_grid.is_empty() { vec![AdaptSetting::of_config(&c.adapt)] } else { o.adapt_grid.clone() };
    let mut cache = match &o.checkpoint_dir {
        Some(dir) => {
            let weights: Vec<&Tensor> = models.iter().map(|m| &m.params.flat).collect();
            Some(checkpoint::AdaptCache::open(dir, identity, &weights, &c.adapt)?)
        }
        None => None,
    };
    // A pass is a setting without its step count; passes in grid order (temperatures outermost,
    // so each adaptation-set sampling is drawn once).
    let pass_of = |g: &AdaptSetting| AdaptSetting { steps: 0, ..*g };
    let mut passes: Vec<AdaptSetting> = Vec::new();
    for g in &grid {
        if !passes.contains(&pass_of(g)) {
            passes.push(pass_of(g));
        }
    }
    let mut sets_of: Option<(AdaptSetting, AdaptationSets)> = None;
    let mut found = Vec::with_capacity(grid.len());
    for pass in passes {
        let AdaptSetting { learning_rate: lr, temperature, set_size, scope, .. } = pass;
        let mut step_counts: Vec<usize> = grid.iter().filter(|g| pass_of(g) == pass).map(|g| g.steps).collect();
        step_counts.sort_unstable();
        step_counts.dedup();
        let settings: Vec<AdaptSetting> = step_counts.iter().map(|&steps| AdaptSetting { steps, ..pass }).collect();
        let cached: Option<Vec<AdaptRanks>> =
            cache.as_ref().and_then(|cache| settings.iter().map(|&g| cache.get(g)).collect());
        let ranks_of_pass: Vec<AdaptRanks> = if let Some(cached) = cached {
            let from = cache.as_ref().expect("read from the cache").path().display().to_string();
            for r in &cached {
                info!(
                    learning_rate = lr,
                    steps = r.setting.steps,
                    temperature,
                    set_size,
                    negatives = pass.negatives,
                    scope = scope.name(),
                    validation_hr10 = format!("{:.4}", Metrics::from_ranks(&r.valid).hr10),
                    "per-user adaptation read back from {from}"
                );
            }
            cached
        } else {
            let start = Instant::now();
            if !sets_of.as_ref().is_some_and(|(of, _)| of.draws_sets_as(&pass)) {
                sets_of = Some((pass, adaptation_sets(t, c.seed, &pass)));
            }
            let sets = &sets_of.as_ref().expect("just made").1;
            let (mut parts, back): (Vec<Vec<Vec<f32>>>, Vec<TwoTower>) = pool.install(|| {
                models
                    .into_par_iter()
                    .map(|m| (adapted_scores(&m, t, sets, lr, c.train.margin, scope, &step_counts), m))
                    .unzip()
            });
            models = back;
            let mut computed = Vec::with_capacity(step_counts.len());
            for (k, &setting) in settings.iter().enumerate() {
                let shard_scores: Vec<Vec<f32>> = parts.iter_mut().map(|s| std::mem::take(&mut s[k])).collect();
                let (valid, test) = ranks(&mean_scores(shard_scores), t);
                let seconds = start.elapsed().as_secs_f64();
                info!(
                    learning_rate = lr,
                    steps = setting.steps,
                    temperature,
                    set_size,
                    negatives = pass.negatives,
                    scope = scope.name(),
                    validation_hr10 = format!("{:.4}", Metrics::from_ranks(&valid).hr10),
                    seconds = format!("{seconds:.0}"),
                    "per-user adaptation evaluated"
                );
                computed.push(AdaptRanks { setting, valid, test, seconds });
            }
            if let Some(cache) = &mut cache {
                cache.put(&computed)?;
            }
            computed
        };
        found.extend(ranks_of_pass);
    }
    let order = |g: &AdaptSetting| grid.iter().position(|x| x == g).expect("a grid setting");
    found.sort_by_key(|f| order(&f.setting));
    Ok((found, models))
}

/// The `method` rows (`eemu-adapt` or `mean-adapt`): the setting with the best validation HR@10
/// (the first in grid order on a tie), then, when the grid has more than one setting, every
/// setting as a candidate row.
fn adapt_rows(base: &MethodResult, method: &str, found: Vec<AdaptRanks>, c: &AdaptConfig) -> Vec<MethodResult> {
    let hr10: Vec<f64> = found.iter().map(|f| Metrics::from_ranks(&f.valid).hr10).collect();
    let best = (0..found.len()).fold(0, |b, i| if hr10[i] > hr10[b] { i } else { b });
    let row = |f: &AdaptRanks, candidate: bool| {
        let name = if candidate { f.setting.method_name(method, c) } else { method.into() };
        let mut r = derived(base, name, f.valid.clone(), f.test.clone(), f.seconds);
        r.adaptation = Some(f.setting);
        r.candidate = candidate;
        r
    };
    let mut rows = vec![row(&found[best], false)];
    if found.len() > 1 {
        rows.extend(found.iter().map(|f| row(f, true)));
    }
    rows
}

/// A method derived from the `eemu` models at inference time (same epoch, other scores).
fn derived(base: &MethodResult, method: String, valid: Vec<usize>, test: Vec<usize>, seconds: f64) -> MethodResult {
    let mut r = base.clone();
    r.method = method;
    r.validation = Metrics::from_ranks(&valid);
    r.test = Metrics::from_ranks(&test);
    r.test_ranks = test;
    r.validation_ranks = valid;
    r.validation_curve = vec![];
    r.train_seconds = base.train_seconds + seconds;
    r
}

/// Ranks under batch mode (paper Algorithm 3) with `k` clusters: per-shard k-means, consensus,
/// one specialized model per (shard, cluster), mean over shards. Evaluated users in no cluster
/// (no training rows) keep the unadapted mean scores.
fn batch_ranks(p: &Prepared, t: &Targets, models: &[TwoTower], k: usize) -> Result<(Vec<usize>, Vec<usize>)> {
    use crate::infer;
    let c = &p.config;
    let n_users = p.dataset.users.len();
    let mut shard_labels = Vec::with_capacity(models.len());
    for (s, m) in models.iter().enumerate() {
        let users = ShardData::from_prepared(p, Some(s)).users;
        let settings = infer::kmeans_settings(&c.cluster, k, c.seed, Some(s));
        shard_labels.push(infer::compute_shard_labels(m, &users, n_users, &settings)?);
    }
    let labelled = (0..n_users).filter(|&u| shard_labels.iter().any(|s| s.labels[u].is_some())).count();
    let method = infer::consensus_method(&c.cluster, labelled);
    let consensus =
        crate::cluster::consensus(&shard_labels, &infer::kmeans_settings(&c.cluster, k, c.seed, None), method)?;
    let mut scores = mean_scores(models.iter().map(|m| model_scores(m, t)).collect());
    let row_of: std::collections::HashMap<u32, usize> = t.users.iter().enumerate().map(|(k, &u)| (u, k)).collect();
    let history = infer::History::new(p);
    let refs: Vec<&TwoTower> = models.iter().collect();
    let moving: Vec<infer::Moving> = models.iter().map(|m| infer::Moving::of(m, c.adapt.scope)).collect();
    for users in infer::members(&consensus) {
        let (x, y) = infer::cluster_vectors(&refs, &moving, &users, &history, c, c.infer.adapt_steps);
        let rows: Vec<(usize, i64)> =
            users.iter().enumerate().filter_map(|(i, u)| row_of.get(u).map(|&r| (r, i as i64))).collect();
        if rows.is_empty() {
            continue;
        }
        let pick = Tensor::from_slice(&rows.iter().map(|r| r.1).collect::<Vec<_>>()).to_device(x.device());
        let s = tch::no_grad(|| x.index_select(0, &pick).mm(&y.transpose(0, 1)));
        let s = Vec::<f32>::try_from(s.to_device(Device::Cpu).flatten(0, 1)).expect("f32 scores");
        let n = t.n_items;
        for (j, &(r, _)) in rows.iter().enumerate() {
            scores[r * n..(r + 1) * n].copy_from_slice(&s[j * n..(j + 1) * n]);
        }
    }
    Ok(ranks(&scores, t))
}

/// Writes one Parquet row per (method, evaluated user): method, original user id, 0-based rank
/// of the test item over all items (training items masked, ties broken by item order), and that
/// of the validation item (`valid_rank`, null for a user without one).
pub fn write_ranks(path: &std::path::Path, p: &Prepared, t: &Targets, results: &[MethodResult]) -> Result<()> {
    use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, UInt32Array};
    use arrow::datatypes::{Field, Schema};
    use std::sync::Arc;
    let n = t.users.len();
    let method: Vec<&str> = results.iter().flat_map(|r| std::iter::repeat_n(r.method.as_str(), n)).collect();
    let ids = &p.dataset.users.ids;
    let user_id: ArrayRef = match ids {
        crate::data::Ids::Int(v) => {
            Arc::new(Int64Array::from_iter_values(results.iter().flat_map(|_| t.users.iter().map(|&u| v[u as usize]))))
        }
        crate::data::Ids::Str(v) => Arc::new(StringArray::from_iter_values(
            results.iter().flat_map(|_| t.users.iter().map(|&u| v[u as usize].as_str())),
        )),
    };
    let rank = UInt32Array::from_iter_values(results.iter().flat_map(|r| r.test_ranks.iter().map(|&x| x as u32)));
    let mut valid_rank = Vec::with_capacity(method.len());
    let with_valid = t.valid.iter().filter(|v| v.is_some()).count();
    for r in results {
        if r.validation_ranks.len() != with_valid {
            bail!(
                "{}: {} validation ranks for {with_valid} users with a validation item",
                r.method,
                r.validation_ranks.len()
            );
        }
        let mut ranks = r.validation_ranks.iter();
        for v in &t.valid {
            valid_rank.push(v.and_then(|_| ranks.next().map(|&x| x as u32)));
        }
    }
    let valid_rank = UInt32Array::from(valid_rank);
    let columns: Vec<ArrayRef> =
        vec![Arc::new(StringArray::from(method)), user_id, Arc::new(rank), Arc::new(valid_rank)];
    let fields: Vec<Field> = ["method", "user_id", "rank", "valid_rank"]
        .iter()
        .zip(&columns)
        .map(|(name, c)| Field::new(*name, c.data_type().clone(), *name == "valid_rank"))
        .collect();
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?;
    crate::store::files::write_parquet_atomic(path, &batch)
}

/// Each method against RETRAIN and against Mean, where those were evaluated, paired over the
/// users (`eemu compare`'s statistics at K = 10 with its default resampling, so
/// `eemu compare --ranks` on the `--ranks-out` file gives the same numbers). Empty when neither
/// baseline was evaluated or no user has a test item.
pub fn paired(p: &Prepared, t: &Targets, results: &[MethodResult]) -> Result<Vec<crate::compare::Comparison>> {
    use crate::compare::{compare_runs, pairs, MethodRanks, Settings};
    let id = |u: u32| match &p.dataset.users.ids {
        crate::data::Ids::Int(v) => v[u as usize].to_string(),
        crate::data::Ids::Str(v) => v[u as usize].clone(),
    };
    let all: Vec<MethodRanks> = results
        .iter()
        .filter(|r| !r.candidate)
        .map(|r| MethodRanks {
            name: r.method.clone(),
            file: "this evaluation".into(),
            ranks: t.users.iter().zip(&r.test_ranks).map(|(&u, &rank)| (id(u), rank as u64)).collect(),
        })
        .collect();
    if all.len() < 2 || t.users.is_empty() || !all.iter().any(|m| m.name == "retrain" || m.name == "mean") {
        return Ok(Vec::new());
    }
    pairs(&all, &[], &[], false)?.iter().map(|(m, b)| compare_runs(m, b, &Settings::default())).collect()
}

/// The results as a table, with each method's HR@10 change versus RETRAIN (like the paper's Table 3).
pub fn table(results: &[MethodResult]) -> String {
    let retrain = results.iter().find(|r| r.method == "retrain").map(|r| r.test.hr10);
    let w = results.iter().map(|r| r.method.len()).max().unwrap_or(0).max(13);
    let mut s = format!(
        "{:<w$} {:>6} {:>9} {:>6} {:>9} {:>13} {:>13} {:>13} {:>13} {:>11}\n",
        "method", "shards", "algorithm", "epoch", "val HR@10", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "vs RETRAIN"
    );
    let pm = |v: f64, se: f64| format!("{:.2}±{:.2}", 100.0 * v, 100.0 * se);
    for r in results {
        let delta = match retrain {
            Some(base) if base > 0.0 => format!("{:+.1}%", 100.0 * (r.test.hr10 - base) / base),
            _ => "-".into(),
        };
        let (alg, epoch) = match r.algorithm {
            Some(a) => (
                serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default(),
                r.epoch.to_string(),
            ),
            None => ("-".to_string(), "-".to_string()),
        };
        let t = &r.test;
        s.push_str(&format!(
            "{:<w$} {:>6} {:>9} {:>6} {:>9.2} {:>13} {:>13} {:>13} {:>13} {:>11}\n",
            r.method,
            r.shards,
            alg,
            epoch,
            100.0 * r.validation.hr10,
            pm(t.hr10, t.hr10_se),
            pm(t.ndcg10, t.ndcg10_se),
            pm(t.hr20, t.hr20_se),
            pm(t.ndcg20, t.ndcg20_se),
            delta
        ));
    }
    s.push_str(&format!(
        "(metrics x 100 ± standard error over {} users; epoch chosen on validation HR@10)\n",
        results.first().map_or(0, |r| r.test.users)
    ));
    for (_, method) in ADAPTED {
        let Some(a) = results.iter().find(|r| r.method == method).and_then(|r| r.adaptation) else { continue };
        let prefix = format!("{method}(");
        let candidates = results.iter().filter(|r| r.candidate && r.method.starts_with(&prefix)).count();
        let how = if candidates > 1 {
            format!("chosen on validation HR@10 among {candidates} settings")
        } else {
            // One setting: the config's [adapt], or the --adapt-* options where given.
            "the one setting tried".to_string()
        };
        let validation = if a.validation_as_negative { ", validation item may be a negative" } else { "" };
        s.push_str(&format!(
            "({method}: adaptation lr={}, steps={}, T={}, set={}, neg={}, scope={}{validation}, {how})\n",
            a.learning_rate,
            a.steps,
            a.temperature,
            a.set_size,
            a.negatives,
            a.scope.name()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_adapted_row_pairs_two_known_methods() {
        assert_eq!(adapted_of("mean"), Some("mean-adapt"));
        assert_eq!(adapted_of("eemu"), Some("eemu-adapt"));
        assert_eq!(adapted_of("retrain"), None);
        for (trained, adapted) in ADAPTED {
            assert!(METHODS.contains(&trained) && METHODS.contains(&adapted), "{trained} -> {adapted}");
            assert_eq!(adapted, format!("{trained}-adapt"));
        }
    }

    #[test]
    fn rank_skips_masked_items_and_breaks_ties_by_item_order() {
        let scores = [0.5, 0.9, 0.5, 0.7, 0.1];
        // target item 2 (0.5): item 1 (0.9) and 3 (0.7) are higher, item 0 ties and comes first.
        assert_eq!(rank_of(&scores, 2, &[]), 3);
        // masking items 1 and 0 leaves only item 3 ahead.
        assert_eq!(rank_of(&scores, 2, &[0, 1]), 1);
        assert_eq!(rank_of(&scores, 0, &[]), 2);
        // a missing (NaN) score ranks last among the unmasked candidates
        assert_eq!(rank_of(&[0.1, f32::NAN, 0.3], 1, &[2]), 1);
    }

    #[test]
    fn adapt_grid_fills_an_empty_list_with_the_config_value() {
        let c = AdaptConfig::default();
        let s = |learning_rate: f64, steps: usize| AdaptSetting {
            learning_rate,
            steps,
            temperature: 0.01,
            set_size: 7,
            negatives: 7,
            scope: AdaptScope::All,
            validation_as_negative: false,
        };
        let grid = |learning_rates: &[f64], steps: &[usize]| {
            AdaptSetting::grid(&AdaptGrid { learning_rates, steps, ..AdaptGrid::default() }, &c).unwrap()
        };
        assert_eq!(grid(&[], &[]), vec![s(2e-4, 1)]);
        assert_eq!(grid(&[], &[]), vec![AdaptSetting::of_config(&c)]);
        assert_eq!(grid(&[1e-3, 1e-4], &[]), vec![s(1e-3, 1), s(1e-4, 1)]);
        assert_eq!(grid(&[], &[3]), vec![s(2e-4, 3)]);
        // rates outside steps, a repeated setting listed once
        assert_eq!(grid(&[1e-3, 1e-3, 2e-4], &[1, 3]), vec![s(1e-3, 1), s(1e-3, 3), s(2e-4, 1), s(2e-4, 3)]);
        // temperatures outermost, then set sizes
        let g = AdaptSetting::grid(
            &AdaptGrid {
                learning_rates: &[1e-4],
                temperatures: &[0.01, 1.0],
                set_sizes: &[7, 21],
                ..AdaptGrid::default()
            },
            &c,
        )
        .unwrap();
        let t = |temperature: f64, set_size: usize| AdaptSetting {
            learning_rate: 1e-4,
            steps: 1,
            temperature,
            set_size,
            negatives: set_size,
            scope: AdaptScope::All,
            validation_as_negative: false,
        };
        assert_eq!(g, vec![t(0.01, 7), t(0.01, 21), t(1.0, 7), t(1.0, 21)]);
        // scopes inside the sampling, outside the rates
        let g = AdaptSetting::grid(
            &AdaptGrid {
                learning_rates: &[1e-4, 1e-3],
                set_sizes: &[7, 21],
                scopes: &[AdaptScope::User, AdaptScope::All],
                ..AdaptGrid::default()
            },
            &c,
        )
        .unwrap();
        let u = |set_size: usize, scope: AdaptScope, learning_rate: f64| AdaptSetting {
            learning_rate,
            steps: 1,
            temperature: 0.01,
            set_size,
            negatives: set_size,
            scope,
            validation_as_negative: false,
        };
        use AdaptScope::{All, User};
        assert_eq!(
            g,
            vec![
                u(7, User, 1e-4),
                u(7, User, 1e-3),
                u(7, All, 1e-4),
                u(7, All, 1e-3),
                u(21, User, 1e-4),
                u(21, User, 1e-3),
                u(21, All, 1e-4),
                u(21, All, 1e-3)
            ]
        );
        // negatives inside the set sizes (default: one per item), the validation flag on all
        let g = AdaptSetting::grid(
            &AdaptGrid {
                set_sizes: &[7, 21],
                negatives: &[3, 7],
                validation_as_negative: true,
                ..AdaptGrid::default()
            },
            &c,
        )
        .unwrap();
        let n: Vec<(usize, usize, bool)> =
            g.iter().map(|s| (s.set_size, s.negatives, s.validation_as_negative)).collect();
        assert_eq!(n, vec![(7, 3, true), (7, 7, true), (21, 3, true), (21, 7, true)]);
        let n = AdaptSetting::grid(&AdaptGrid { set_sizes: &[7, 21], ..AdaptGrid::default() }, &c).unwrap();
        assert_eq!(n.iter().map(|s| s.negatives).collect::<Vec<_>>(), vec![7, 21]);
        let fixed = AdaptConfig { negatives: 5, ..c.clone() };
        let n = AdaptSetting::grid(&AdaptGrid { set_sizes: &[7, 21], ..AdaptGrid::default() }, &fixed).unwrap();
        assert_eq!(n.iter().map(|s| s.negatives).collect::<Vec<_>>(), vec![5, 5]);
        // more negatives than items cannot be paired
        let e = AdaptSetting::grid(&AdaptGrid { negatives: &[8], ..AdaptGrid::default() }, &c).unwrap_err();
        assert!(e.to_string().contains("set size (7), got 8"), "{e}");
    }

    #[test]
    fn adapt_row_names_give_the_sampling_only_where_it_is_not_the_configs() {
        let c = AdaptConfig::default();
        let s = AdaptSetting {
            learning_rate: 1e-4,
            steps: 3,
            temperature: 0.01,
            set_size: 7,
            negatives: 7,
            scope: AdaptScope::All,
            validation_as_negative: false,
        };
        assert_eq!(s.method_name("eemu-adapt", &c), "eemu-adapt(lr=0.0001,steps=3)");
        assert_eq!(s.method_name("mean-adapt", &c), "mean-adapt(lr=0.0001,steps=3)");
        assert_eq!(
            AdaptSetting { temperature: 1.0, ..s }.method_name("eemu-adapt", &c),
            "eemu-adapt(lr=0.0001,steps=3,T=1)"
        );
        assert_eq!(
            AdaptSetting { set_size: 21, negatives: 21, ..s }.method_name("eemu-adapt", &c),
            "eemu-adapt(lr=0.0001,steps=3,set=21)"
        );
        assert_eq!(
            AdaptSetting { temperature: 100.0, set_size: 21, negatives: 21, ..s }.method_name("eemu-adapt", &c),
            "eemu-adapt(lr=0.0001,steps=3,T=100,set=21)"
        );
        // negatives named where they are not one per item (adapt.negatives = 0) or the config's
        assert_eq!(
            AdaptSetting { set_size: 21, negatives: 7, ..s }.method_name("eemu-adapt", &c),
            "eemu-adapt(lr=0.0001,steps=3,set=21,neg=7)"
        );
        let seven = AdaptConfig { negatives: 7, ..c.clone() };
        assert_eq!(
            AdaptSetting { set_size: 21, negatives: 7, ..s }.method_name("eemu-adapt", &seven),
            "eemu-adapt(lr=0.0001,steps=3,set=21)"
        );
        assert_eq!(
            AdaptSetting { set_size: 21, negatives: 21, ..s }.method_name("eemu-adapt", &seven),
            "eemu-adapt(lr=0.0001,steps=3,set=21,neg=21)"
        );
        let user = AdaptSetting { scope: AdaptScope::User, ..s };
        assert_eq!(user.method_name("eemu-adapt", &c), "eemu-adapt(lr=0.0001,steps=3,scope=user)");
        assert_eq!(
            user.method_name("eemu-adapt", &AdaptConfig { scope: AdaptScope::User, ..c.clone() }),
            "eemu-adapt(lr=0.0001,steps=3)"
        );
        assert_eq!(
            s.method_name("eemu-adapt", &AdaptConfig { scope: AdaptScope::User, ..c }),
            "eemu-adapt(lr=0.0001,steps=3,scope=all)"
        );
    }

    #[test]
    fn metrics_by_hand() {
        // ranks 0, 5, 12, 30: HR@10 = 2/4, HR@20 = 3/4.
        let m = Metrics::from_ranks(&[0, 5, 12, 30]);
        assert_eq!((m.hr10, m.hr20), (0.5, 0.75));
        let ndcg10 = (1.0 + 1.0 / 7f64.log2()) / 4.0;
        let ndcg20 = (1.0 + 1.0 / 7f64.log2() + 1.0 / 14f64.log2()) / 4.0;
        assert!((m.ndcg10 - ndcg10).abs() < 1e-12 && (m.ndcg20 - ndcg20).abs() < 1e-12);
        assert!((m.hr10_se - (0.25f64 / 4.0).sqrt()).abs() < 1e-12);
        let gains = [1.0, 1.0 / 7f64.log2(), 0.0, 0.0];
        let var = gains.iter().map(|g| (g - ndcg10).powi(2)).sum::<f64>() / 3.0;
        assert!((m.ndcg10_se - (var / 4.0).sqrt()).abs() < 1e-12);
    }
}
