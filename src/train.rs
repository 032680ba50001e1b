//! Per-shard training. A shard's tasks are its users: each (user, shard) slice has support rows
//! and query rows (see `eemu_core::data::shard`). Algorithms (`[train] algorithm`):
//!
//! - `fomaml`: the reference mechanics (alshabae/EEMU `main.py`): per meta-batch, every user's
//!   inner step starts from the batch-start weights, one Adam step on the support loss, then one
//!   Adam step of the query loss / batch_size at the adapted weights applied to the running outer
//!   weights; one Adam (moments and step count) is shared by inner and outer steps.
//! - `maml`: second-order MAML: `inner_steps` SGD steps (`inner_learning_rate`) on the support
//!   loss with `create_graph`, the query loss at the adapted weights differentiated through them,
//!   meta-gradients averaged over the meta-batch, one Adam step.
//! - `reptile`: `inner_steps` SGD steps on each user's rows from the batch-start weights, then one
//!   Adam step along the mean of (weights - adapted weights).
//!
//!   With `inner_loop = "batched"`, `maml` and `reptile` take the inner steps once for the whole
//!   meta-batch, on the mean of its users' losses (one forward/backward per step instead of one
//!   per user); for `reptile` with one inner step that is the same update. (With one inner
//!   step, reptile's direction is the inner learning rate times the gradient of the users'
//!   mean loss, so under Adam it is plain training with every user weighing the same.)
//! - `standard`: plain mini-batch training on the shard's rows (support and query alike), one
//!   Adam step per batch of `batch_size` users: the sharded "Mean" baseline, and with one shard
//!   the RETRAIN gold standard.
//!
//! Negatives: per positive one uniform item (not among the user's positives in this shard nor
//! the user's validation item) and one in-batch item (a positive of another user of the same
//! batch, same exclusion). Everything random comes from keyed ChaCha streams of (seed, shard,
//! epoch), so training on the CPU is reproducible to the byte.
use std::time::Instant;

use anyhow::Result;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::{Kind, Tensor};

use crate::config::{Algorithm, InnerLoop, TrainConfig};
use crate::data::split::Split;
use crate::model::{gather_rows, TwoTower};
use crate::store::lineage::validation_items;
use crate::store::Prepared;

/// One shard's training data: its users with their support and query items.
#[derive(Debug, Clone)]
pub struct ShardData {
    pub shard: usize,
    pub n_items: u32,
    /// Users with rows in this shard, ascending.
    pub users: Vec<u32>,
    pub support: Vec<Vec<u32>>,
    pub query: Vec<Vec<u32>>,
    /// Per user: items never drawn as negatives (their positives here + validation item), sorted.
    pub excluded: Vec<Vec<u32>>,
    /// Per user: their validation item, if any (for the shard-local validation metric).
    pub validation: Vec<Option<u32>>,
    /// Over all users of the dataset: true for users of this shard.
    pub present: Vec<bool>,
}

impl ShardData {
    /// The rows of shard `shard` of a prepared dataset; `None` takes every training row (one shard).
    pub fn from_prepared(p: &Prepared, shard: Option<usize>) -> ShardData {
        let x = &p.dataset.interactions;
        let n_users = p.dataset.users.len();
        let mut support = vec![Vec::new(); n_users];
        let mut query = vec![Vec::new(); n_users];
        for r in 0..x.len() {
            let Some(s) = p.plan.shard[r] else { continue };
            if shard.is_some_and(|want| want != s as usize) || p.split[r] != Split::Train {
                continue;
            }
            let u = x.user[r] as usize;
            // With one shard for everything, every row is support (query slicing is per shard).
            if shard.is_some() && p.plan.query[r] {
                query[u].push(x.item[r]);
            } else {
                support[u].push(x.item[r]);
            }
        }
        let validation_all = validation_items(&p.dataset, &p.split);
        let users: Vec<u32> =
            (0..n_users as u32).filter(|&u| !support[u as usize].is_empty() || !query[u as usize].is_empty()).collect();
        let mut present = vec![false; n_users];
        users.iter().for_each(|&u| present[u as usize] = true);
        let excluded = users
            .iter()
            .map(|&u| {
                let mut e: Vec<u32> = support[u as usize]
                    .iter()
                    .chain(&query[u as usize])
                    .copied()
                    .chain(validation_all[u as usize])
                    .collect();
                e.sort_unstable();
                e.dedup();
                e
            })
            .collect();
        ShardData {
            shard: shard.unwrap_or(0),
            n_items: p.dataset.items.len() as u32,
            support: users.iter().map(|&u| std::mem::take(&mut support[u as usize])).collect(),
            query: users.iter().map(|&u| std::mem::take(&mut query[u as usize])).collect(),
            validation: users.iter().map(|&u| validation_all[u as usize]).collect(),
            excluded,
            users,
            present,
        }
    }

    pub fn rows(&self) -> usize {
        self.support.iter().chain(&self.query).map(Vec::len).sum()
    }

    /// A freshly initialised model for this shard (seeded by the config's seed and the shard).
    pub fn new_model(&self, p: &Prepared, device: tch::Device) -> TwoTower {
        let c = &p.config;
        TwoTower::new(&c.model, &p.dataset.users, &p.dataset.items, &self.present, c.seed, self.shard, device)
    }
}

/// Adam as in PyTorch (betas 0.9 / 0.999, eps 1e-8, no weight decay, dense), over the flat
/// parameter vector. On the CPU, moments that fall below the normal range are stored as zero
/// (`flush_subnormal`): the same weights, without the x86 slow path for subnormal operands.
pub struct Adam {
    lr: f64,
    step: i32,
    m: Tensor,
    v: Tensor,
}

impl Adam {
    pub fn new(flat: &Tensor, lr: f64) -> Adam {
        Adam { lr, step: 0, m: flat.detach().zeros_like(), v: flat.detach().zeros_like() }
    }

    /// An Adam that goes on from a saved state (`step_count` and `moments` of another).
    pub fn from_state(lr: f64, step: i32, m: Tensor, v: Tensor) -> Adam {
        Adam { lr, step, m, v }
    }

    /// Steps taken so far.
    pub fn step_count(&self) -> i32 {
        self.step
    }

    /// The first and second moment estimates.
    pub fn moments(&self) -> (&Tensor, &Tensor) {
        (&self.m, &self.v)
    }

    /// One update of `flat` in place with gradient `grad`.
    pub fn step(&mut self, flat: &mut Tensor, grad: &Tensor) {
        if flat.device() == tch::Device::Cpu {
            let (step, sqrt_bc2) = self.advance_cpu();
            return self.step_cpu(flat, grad, step, sqrt_bc2);
        }
        let (bc1, bc2) = self.advance();
        tch::no_grad(|| {
            let _ = self.m.g_mul_scalar_(ADAM_B1).g_add_(&(grad * (1.0 - ADAM_B1)));
            let _ = self.v.g_mul_scalar_(ADAM_B2).g_add_(&(grad * grad * (1.0 - ADAM_B2)));
            let denom = self.v.sqrt() / bc2.sqrt() + 1e-8;
            let _ = flat.g_sub_(&(&self.m / denom * (self.lr / bc1)));
        });
    }

    /// Counts one more step and returns its bias corrections (1 - beta1^t, 1 - beta2^t).
    fn advance(&mut self) -> (f64, f64) {
        self.step += 1;
        (1.0 - ADAM_B1.powi(self.step), 1.0 - ADAM_B2.powi(self.step))
    }

    /// Counts one more step and returns the scalars of `adam_update` for it: the step size
    /// (learning rate / bias correction 1) and the square root of bias correction 2.
    fn advance_cpu(&mut self) -> (f32, f32) {
        let (bc1, bc2) = self.advance();
        ((self.lr / bc1) as f32, bc2.sqrt() as f32)
    }
}

const ADAM_B1: f64 = 0.9;
const ADAM_B2: f64 = 0.999;

impl Adam {
    /// The same update as one fused pass over the memory (the tensor version makes a dozen
    /// passes over every parameter, which dominates per-user meta-learning on the CPU).
    fn step_cpu(&mut self, flat: &mut Tensor, grad: &Tensor, step: f32, sqrt_bc2: f32) {
        let grad = grad.contiguous();
        let n = flat.numel();
        assert!(
            grad.numel() == n && self.m.numel() == n && self.v.numel() == n,
            "Adam over {n} parameters given a gradient of {}",
            grad.numel()
        );
        // SAFETY: four distinct CPU tensors (`floats` checks kind and layout); nothing else
        // reads or writes their data during this call.
        let (p, g, m, v) = unsafe { (floats(flat), floats(&grad), floats(&self.m), floats(&self.v)) };
        adam_update(p, g, m, v, step, sqrt_bc2);
    }
}

/// The elements of a contiguous f32 CPU tensor, to read or write in place. (A `Tensor` is a
/// handle to memory libtorch owns, so a shared handle can hand out its data mutably; whether
/// that is sound depends on what else touches the data, hence `unsafe`.)
///
/// # Safety
/// While the slice lives, nothing else may write the tensor's data, nor read it where the slice
/// is written to (no libtorch op on it, no second slice of it).
#[allow(clippy::mut_from_ref)]
unsafe fn floats(t: &Tensor) -> &mut [f32] {
    assert!(
        t.kind() == Kind::Float && t.is_contiguous() && t.device() == tch::Device::Cpu,
        "a contiguous f32 CPU tensor is needed, not {:?} on {:?}",
        t.kind(),
        t.device()
    );
    std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, t.numel())
}

/// Defines `$name`, which runs `$portable` compiled for AVX-512F (as `$avx512`) or AVX2 (as
/// `$avx2`) where the CPU has them, else as is: one loop, three instruction sets.
macro_rules! on_the_widest_vectors {
    ($(#[$doc:meta])* pub fn $name:ident = $portable:ident, $avx512:ident, $avx2:ident ($($a:ident: $t:ty),* $(,)?)) => {
        $(#[$doc])*
        pub fn $name($($a: $t),*) {
            // SAFETY (both): `adam_update_width` names an extension only where the CPU has it.
            #[cfg(target_arch = "x86_64")]
            match adam_update_width() {
                "avx512" => return unsafe { $avx512($($a),*) },
                "avx2" => return unsafe { $avx2($($a),*) },
                _ => {}
            }
            $portable($($a),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        fn $avx512($($a: $t),*) {
            $portable($($a),*)
        }

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        fn $avx2($($a: $t),*) {
            $portable($($a),*)
        }
    };
}

on_the_widest_vectors! {
    /// The CPU Adam update of `p` with gradient `g` and moments `m`, `v` (step size `step` = lr /
    /// bias correction 1, `sqrt_bc2` = the square root of bias correction 2), on the widest
    /// vectors the CPU has (AVX-512, AVX2, else the x86-64 baseline's SSE2). Every operation is a
    /// correctly rounded IEEE one (multiply, add, divide, square root; LLVM fuses none of them
    /// into an FMA unless told to), so each width writes the same bytes; the test
    /// `the_vectorized_adam_updates_write_the_bytes_of_the_portable_one` checks it.
    pub fn adam_update = adam_update_portable, adam_update_avx512, adam_update_avx2
        (p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: f32, sqrt_bc2: f32)
}

on_the_widest_vectors! {
    /// `adam_update` of the parameters `from`, written to `to` (`from` is left as it was): a copy
    /// and an update in one pass.
    pub fn adam_update_to = adam_update_to_portable, adam_update_to_avx512, adam_update_to_avx2
        (from: &[f32], to: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: f32, sqrt_bc2: f32)
}

on_the_widest_vectors! {
    /// Two `adam_update`s with a zero gradient where the first one's new parameters are never
    /// read: the first step's moment decay, then the second step (`step`, `sqrt_bc2` are the
    /// second step's) on `p`. The same bytes as both updates, with one pass over the memory.
    pub fn adam_update_idle_then = adam_update_idle_then_portable, adam_update_idle_then_avx512,
        adam_update_idle_then_avx2 (p: &mut [f32], m: &mut [f32], v: &mut [f32], step: f32, sqrt_bc2: f32)
}

/// The vector extension `adam_update` runs on this CPU: "avx512" (AVX-512F), "avx2" or
/// "portable".
pub fn adam_update_width() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return "avx512";
        }
        if std::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "portable"
}

/// One Adam moment update with gradient `g` (both moments flushed, `flush_subnormal`).
#[inline(always)]
fn adam_moments(g: f32, m: &mut f32, v: &mut f32) {
    let (b1, b2) = (0.9f32, 0.999f32);
    *m = flush_subnormal(b1 * *m + (1.0 - b1) * g);
    *v = flush_subnormal(b2 * *v + (1.0 - b2) * g * g);
}

/// The amount Adam subtracts from a parameter with (updated) moments `m`, `v`.
#[inline(always)]
fn adam_delta(m: f32, v: f32, step: f32, sqrt_bc2: f32) -> f32 {
    step * m / (v.sqrt() / sqrt_bc2 + 1e-8)
}

/// The update in plain Rust, compiled for whatever target features its caller has (the x86-64
/// baseline's SSE2 when called from outside this file): the reference the wider versions equal.
#[inline(always)]
pub fn adam_update_portable(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: f32, sqrt_bc2: f32) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        adam_moments(g, m, v);
        *p -= adam_delta(*m, *v, step, sqrt_bc2);
    }
}

#[inline(always)]
fn adam_update_to_portable(
    from: &[f32],
    to: &mut [f32],
    g: &[f32],
    m: &mut [f32],
    v: &mut [f32],
    step: f32,
    sqrt_bc2: f32,
) {
    let n = from.len();
    assert!(to.len() == n && g.len() == n && m.len() == n && v.len() == n);
    for ((((&p, to), &g), m), v) in from.iter().zip(to.iter_mut()).zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        adam_moments(g, m, v);
        *to = p - adam_delta(*m, *v, step, sqrt_bc2);
    }
}

#[inline(always)]
fn adam_update_idle_then_portable(p: &mut [f32], m: &mut [f32], v: &mut [f32], step: f32, sqrt_bc2: f32) {
    for ((p, m), v) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()) {
        adam_moments(0.0, m, v);
        adam_moments(0.0, m, v);
        *p -= adam_delta(*m, *v, step, sqrt_bc2);
    }
}

/// `x`, or zero where `x` is subnormal. Dense Adam decays the moments of every parameter whose
/// gradient is zero (the embedding rows of the items and users a step does not touch) towards
/// zero, but under round-to-nearest `0.9 * m` never gets there: a few ulps above zero it rounds
/// back to itself. Left alone, a third of the first moments ends up subnormal for good in a long
/// meta-training run, and x86 cores take a slow path on every operation with a subnormal operand
/// (docs/benchmarks.md, "Subnormal Adam moments"). A subnormal moment moves its parameter by less
/// than 1e-29, below half an ulp of any weight that is not itself within 1e-22 of zero, so
/// flushing leaves the weights' bytes unchanged.
#[inline]
fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE {
        0.0
    } else {
        x
    }
}

/// MAML's meta-gradient d L_query(theta') / d theta with theta' = theta after `steps` SGD
/// steps of size `alpha` on L_support, keeping the second-order terms (create_graph).
pub fn maml_meta_gradient(
    theta: &Tensor,
    support_loss: impl Fn(&Tensor) -> Tensor,
    query_loss: impl Fn(&Tensor) -> Tensor,
    alpha: f64,
    steps: usize,
) -> (Tensor, f64) {
    let mut adapted = theta.shallow_clone();
    for _ in 0..steps {
        let g = Tensor::run_backward(&[support_loss(&adapted)], &[&adapted], true, true).remove(0);
        adapted = &adapted - g * alpha;
    }
    let lq = query_loss(&adapted);
    let value = lq.double_value(&[]);
    (Tensor::run_backward(&[&lq], &[theta], false, false).remove(0), value)
}

/// Gradient of `loss` with respect to the flat parameter vector.
fn grad(loss: &Tensor, flat: &Tensor) -> Tensor {
    Tensor::run_backward(&[loss], &[flat], false, false).remove(0)
}

/// Mean hinge loss max(0, margin - (pos - neg)) over pairs.
pub fn hinge(pos: &Tensor, neg: &Tensor, margin: f64) -> Tensor {
    (-(pos - neg) + margin).relu().mean(Kind::Float)
}

/// A keyed RNG for (seed, shard, purpose, epoch).
pub fn stream(seed: u64, shard: usize, purpose: &str, epoch: usize) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"eemu-train-v1");
    h.update(seed.to_le_bytes());
    h.update((shard as u64).to_le_bytes());
    h.update(purpose.as_bytes());
    h.update((epoch as u64).to_le_bytes());
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// A uniform item not in `excluded` (sorted). Falls back to any item if all are excluded.
fn uniform_negative(rng: &mut ChaCha8Rng, n_items: u32, excluded: &[u32]) -> u32 {
    for _ in 0..1000 {
        let i = rng.gen_range(0..n_items);
        if excluded.binary_search(&i).is_err() {
            return i;
        }
    }
    rng.gen_range(0..n_items)
}

/// Positives of one user with their uniform and in-batch negatives.
struct Pairs {
    pos: Vec<i64>,
    uniform: Vec<i64>,
    in_batch: Vec<i64>,
}

fn pairs(rng: &mut ChaCha8Rng, d: &ShardData, t: usize, positives: &[u32], pool: &[(usize, u32)]) -> Pairs {
    let excluded = &d.excluded[t];
    let candidates: Vec<u32> =
        pool.iter().filter(|(owner, i)| *owner != t && excluded.binary_search(i).is_err()).map(|(_, i)| *i).collect();
    let mut out = Pairs { pos: vec![], uniform: vec![], in_batch: vec![] };
    for &p in positives {
        out.pos.push(p as i64);
        out.uniform.push(uniform_negative(rng, d.n_items, excluded) as i64);
        let b = match candidates.choose(rng) {
            Some(&i) => i,
            None => uniform_negative(rng, d.n_items, excluded),
        };
        out.in_batch.push(b as i64);
    }
    out
}

/// Loss of one user's pairs under the flat parameters `flat`.
fn user_loss(model: &TwoTower, flat: &Tensor, user: u32, pr: &Pairs, margin: f64) -> Tensor {
    user_loss_at(model, &model.params.views(flat), user, pr, margin, None)
}

/// The items of a user's pairs in the order the loss reads them: positives, uniform negatives,
/// in-batch negatives.
fn pair_items(pr: &Pairs) -> Vec<i64> {
    pr.pos.iter().chain(&pr.uniform).chain(&pr.in_batch).copied().collect()
}

/// `user_loss` under the parameters `p`, with the lookup tables read at the given (user side,
/// item side) rows where given (`TwoTower::user_vectors_at`).
fn user_loss_at(
    model: &TwoTower,
    p: &[Tensor],
    user: u32,
    pr: &Pairs,
    margin: f64,
    table_rows: Option<(&[Tensor], &[Tensor])>,
) -> Tensor {
    let device = model.device;
    let users = Tensor::from_slice(&[user as i64]).to_device(device);
    let items = Tensor::from_slice(&pair_items(pr)).to_device(device);
    let (u, v) = match table_rows {
        None => (model.user_vectors(p, &users), model.item_vectors(p, &items)),
        Some((at_u, at_i)) => (model.user_vectors_at(p, &users, at_u), model.item_vectors_at(p, &items, at_i)),
    };
    let s = v.matmul(&u.transpose(0, 1)).squeeze_dim(1);
    let n = pr.pos.len() as i64;
    let pos = s.narrow(0, 0, n);
    let neg = s.narrow(0, n, 2 * n);
    hinge(&Tensor::cat(&[&pos, &pos], 0), &neg, margin)
}

/// Mean hinge loss over the pairs of several users: `owner[j]` is the batch position of the
/// user of pair j; `items` = [positives, uniform negatives, in-batch negatives].
fn batch_loss(model: &TwoTower, users: Vec<u32>, owner: &[i64], items: [&[i64]; 3], margin: f64) -> Tensor {
    let device = model.device;
    let p = &model.params.views(&model.params.flat);
    let users: Vec<i64> = users.into_iter().map(i64::from).collect();
    let u = model.user_vectors(p, &Tensor::from_slice(&users).to_device(device));
    let u = gather_rows(&u, &Tensor::from_slice(owner).to_device(device));
    let all: Vec<i64> = items.iter().flat_map(|v| v.iter().copied()).collect();
    let v = model.item_vectors(p, &Tensor::from_slice(&all).to_device(device));
    let n = owner.len() as i64;
    let score = |k: i64| (&u * v.narrow(0, k * n, n)).sum_dim_intlist(1, false, Kind::Float);
    let s = score(0);
    hinge(&Tensor::cat(&[&s, &s], 0), &Tensor::cat(&[score(1), score(2)], 0), margin)
}

/// Mean over users of each user's mean hinge loss (the same value as averaging `user_loss`
/// over the users), in one forward pass: the batched inner loop's objective.
fn users_loss(model: &TwoTower, flat: &Tensor, users: &[u32], prs: &[Pairs], margin: f64) -> Tensor {
    let device = model.device;
    let p = &model.params.views(flat);
    let ids: Vec<i64> = users.iter().map(|&u| u as i64).collect();
    let u = model.user_vectors(p, &Tensor::from_slice(&ids).to_device(device));
    let mut owner = Vec::new();
    let mut weight = Vec::new();
    let (mut pos, mut uni, mut inb) = (Vec::new(), Vec::new(), Vec::new());
    for (k, pr) in prs.iter().enumerate() {
        let n = pr.pos.len();
        owner.extend(std::iter::repeat_n(k as i64, n));
        // Each pair contributes two hinge terms; a user's terms average to their loss.
        weight.extend(std::iter::repeat_n(1.0 / (2.0 * n as f32 * prs.len() as f32), n));
        pos.extend_from_slice(&pr.pos);
        uni.extend_from_slice(&pr.uniform);
        inb.extend_from_slice(&pr.in_batch);
    }
    let n = owner.len() as i64;
    let u = gather_rows(&u, &Tensor::from_slice(&owner).to_device(device));
    let all: Vec<i64> = pos.into_iter().chain(uni).chain(inb).collect();
    let v = model.item_vectors(p, &Tensor::from_slice(&all).to_device(device));
    let score = |k: i64| (&u * v.narrow(0, k * n, n)).sum_dim_intlist(1, false, Kind::Float);
    let s = score(0);
    let terms = (-(&s - score(1)) + margin).relu() + (-(&s - score(2)) + margin).relu();
    (terms * Tensor::from_slice(&weight).to_device(device)).sum(Kind::Float)
}

/// Per-epoch record of the training log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub loss: f64,
    pub seconds: f64,
    /// Shard-local HR@10 of the validation items of this shard's users (shard model alone,
    /// the user's rows in this shard masked).
    pub validation_hr10: Option<f64>,
}

/// The training log saved next to a shard model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainLog {
    pub shard: usize,
    pub lineage: String,
    pub algorithm: Algorithm,
    /// Epochs of plain training before `algorithm` (`train.warmup_epochs`); absent when none.
    #[serde(default, skip_serializing_if = "crate::config::is_zero")]
    pub warmup_epochs: usize,
    pub users: usize,
    pub rows: usize,
    /// Users skipped by meta-learning because their slice has no query row.
    pub users_without_query: usize,
    pub parameters: i64,
    pub device: String,
    /// On the CPU, the kernel caps the model was trained under (`engine::cpu_kernels`); the
    /// same bytes need the same caps. Absent in logs written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_kernels: Option<String>,
    /// On the CPU, its name, family, model and widest vector extension (`engine::cpu_model`):
    /// under the same caps, CPUs of other kinds can still give other bytes (an Intel Xeon and an
    /// AMD EPYC do).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    pub epochs: Vec<EpochRecord>,
    pub seconds: f64,
}

/// Runs epoch `epoch` (1-based) with the algorithm `cfg` gives it (plain training during a
/// warm-up; the first epoch after one starts a fresh Adam at `cfg.learning_rate`); returns the
/// mean loss over steps.
pub fn train_epoch(
    model: &mut TwoTower,
    d: &ShardData,
    cfg: &TrainConfig,
    adam: &mut Adam,
    seed: u64,
    epoch: usize,
) -> f64 {
    let form = FomamlForm::for_device(model.device);
    train_epoch_in(model, d, cfg, adam, seed, epoch, form)
}

/// How `fomaml` takes a user's two Adam steps. Both forms write the same bytes on the CPU (test
/// `fomaml_row_sparse_trains_the_bytes_of_the_dense_steps`); `train_epoch` picks `RowSparse` on
/// the CPU and `Dense` elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FomamlForm {
    /// Each step over every parameter, as the reference writes it.
    Dense,
    /// The lookup tables' rows that none of the user's pairs reads skip the inner step's new
    /// weights and take both steps in one pass (`RowSparse`); CPU only.
    RowSparse,
}

impl FomamlForm {
    /// `RowSparse` on the CPU, `Dense` on CUDA.
    pub fn for_device(device: tch::Device) -> FomamlForm {
        if device == tch::Device::Cpu {
            FomamlForm::RowSparse
        } else {
            FomamlForm::Dense
        }
    }
}

/// `train_epoch` with `fomaml`'s steps taken in the given form.
pub fn train_epoch_in(
    model: &mut TwoTower,
    d: &ShardData,
    cfg: &TrainConfig,
    adam: &mut Adam,
    seed: u64,
    epoch: usize,
    form: FomamlForm,
) -> f64 {
    if cfg.starts_after_warmup(epoch) {
        *adam = Adam::new(&model.params.flat, cfg.learning_rate);
    }
    let algorithm = cfg.algorithm_at(epoch);
    let mut rng = stream(seed, d.shard, "epoch", epoch);
    let mut order: Vec<usize> = (0..d.users.len()).collect();
    if algorithm != Algorithm::Standard {
        order.retain(|&t| !d.query[t].is_empty() && !d.support[t].is_empty());
    }
    order.shuffle(&mut rng);
    let mut total = 0.0;
    let mut steps = 0usize;
    let mut row_sparse =
        (algorithm == Algorithm::Fomaml && form == FomamlForm::RowSparse).then(|| RowSparse::new(model));
    for batch in order.chunks(cfg.batch_size) {
        let pool: Vec<(usize, u32)> =
            batch.iter().flat_map(|&t| d.support[t].iter().chain(&d.query[t]).map(move |&i| (t, i))).collect();
        match algorithm {
            Algorithm::Standard => {
                // One forward pass for the whole batch: mean hinge loss over all its pairs.
                let (mut owner, mut pos, mut uni, mut inb) = (vec![], vec![], vec![], vec![]);
                for (k, &t) in batch.iter().enumerate() {
                    let positives: Vec<u32> = d.support[t].iter().chain(&d.query[t]).copied().collect();
                    let pr = pairs(&mut rng, d, t, &positives, &pool);
                    owner.extend(std::iter::repeat_n(k as i64, pr.pos.len()));
                    pos.extend(pr.pos);
                    uni.extend(pr.uniform);
                    inb.extend(pr.in_batch);
                }
                let users = batch.iter().map(|&t| d.users[t]).collect();
                let loss = batch_loss(model, users, &owner, [&pos, &uni, &inb], cfg.margin);
                let g = grad(&loss, &model.params.flat);
                adam.step(&mut model.params.flat, &g);
                total += loss.double_value(&[]);
                steps += 1;
            }
            Algorithm::Fomaml if let Some(rs) = row_sparse.as_mut() => {
                // The outer steps go straight to the model's own vector: nothing reads it before
                // the batch ends.
                let start = model.params.copy().set_requires_grad(true);
                for &t in batch {
                    let s = pairs(&mut rng, d, t, &d.support[t], &pool);
                    let q = pairs(&mut rng, d, t, &d.query[t], &pool);
                    let lq = rs.user_steps(model, adam, &start, d.users[t], &s, &q, cfg);
                    total += lq * cfg.batch_size as f64;
                    steps += 1;
                }
            }
            Algorithm::Fomaml => {
                // The outer weights live in `outer` and take their Adam steps there; the model's
                // own vector holds each user's adapted weights.
                let start = model.params.copy();
                let mut outer = model.params.copy();
                for &t in batch {
                    let s = pairs(&mut rng, d, t, &d.support[t], &pool);
                    let q = pairs(&mut rng, d, t, &d.query[t], &pool);
                    model.params.load(&start);
                    let ls = user_loss(model, &model.params.flat, d.users[t], &s, cfg.margin);
                    let g = grad(&ls, &model.params.flat);
                    adam.step(&mut model.params.flat, &g);
                    let lq = user_loss(model, &model.params.flat, d.users[t], &q, cfg.margin) / cfg.batch_size as f64;
                    let g = grad(&lq, &model.params.flat);
                    adam.step(&mut outer, &g);
                    total += lq.double_value(&[]) * cfg.batch_size as f64;
                    steps += 1;
                }
                model.params.load(&outer);
            }
            Algorithm::Maml if cfg.inner_loop == InnerLoop::Batched => {
                let (mut sps, mut qs) = (Vec::new(), Vec::new());
                for &t in batch {
                    sps.push(pairs(&mut rng, d, t, &d.support[t], &pool));
                    qs.push(pairs(&mut rng, d, t, &d.query[t], &pool));
                }
                let users: Vec<u32> = batch.iter().map(|&t| d.users[t]).collect();
                let (g, lq) = maml_meta_gradient(
                    &model.params.flat,
                    |p| users_loss(model, p, &users, &sps, cfg.margin),
                    |p| users_loss(model, p, &users, &qs, cfg.margin),
                    cfg.inner_learning_rate,
                    cfg.inner_steps,
                );
                adam.step(&mut model.params.flat, &g);
                total += lq * batch.len() as f64;
                steps += batch.len();
            }
            Algorithm::Maml => {
                let mut meta = model.params.flat.detach().zeros_like();
                for &t in batch {
                    let sp = pairs(&mut rng, d, t, &d.support[t], &pool);
                    let q = pairs(&mut rng, d, t, &d.query[t], &pool);
                    let user = d.users[t];
                    let (g, lq) = maml_meta_gradient(
                        &model.params.flat,
                        |p| user_loss(model, p, user, &sp, cfg.margin),
                        |p| user_loss(model, p, user, &q, cfg.margin),
                        cfg.inner_learning_rate,
                        cfg.inner_steps,
                    );
                    let _ = meta.g_add_(&g);
                    total += lq;
                    steps += 1;
                }
                let meta = meta / batch.len() as f64;
                adam.step(&mut model.params.flat, &meta);
            }
            Algorithm::Reptile if cfg.inner_loop == InnerLoop::Batched => {
                let theta = model.params.copy();
                let prs: Vec<Pairs> = batch
                    .iter()
                    .map(|&t| {
                        let positives: Vec<u32> = d.support[t].iter().chain(&d.query[t]).copied().collect();
                        pairs(&mut rng, d, t, &positives, &pool)
                    })
                    .collect();
                let users: Vec<u32> = batch.iter().map(|&t| d.users[t]).collect();
                let mut phi = theta.copy().set_requires_grad(true);
                let mut last = 0.0;
                for _ in 0..cfg.inner_steps {
                    let l = users_loss(model, &phi, &users, &prs, cfg.margin);
                    last = l.double_value(&[]);
                    let g = grad(&l, &phi);
                    tch::no_grad(|| {
                        let _ = phi.g_sub_(&(g * cfg.inner_learning_rate));
                    });
                }
                let direction = tch::no_grad(|| &theta - &phi);
                adam.step(&mut model.params.flat, &direction);
                total += last * batch.len() as f64;
                steps += batch.len();
            }
            Algorithm::Reptile => {
                let theta = model.params.copy();
                let mut direction = theta.zeros_like();
                for &t in batch {
                    let positives: Vec<u32> = d.support[t].iter().chain(&d.query[t]).copied().collect();
                    let pr = pairs(&mut rng, d, t, &positives, &pool);
                    let mut phi = theta.copy().set_requires_grad(true);
                    let mut last = 0.0;
                    for _ in 0..cfg.inner_steps {
                        let l = user_loss(model, &phi, d.users[t], &pr, cfg.margin);
                        last = l.double_value(&[]);
                        let g = grad(&l, &phi);
                        tch::no_grad(|| {
                            let _ = phi.g_sub_(&(g * cfg.inner_learning_rate));
                        });
                    }
                    tch::no_grad(|| {
                        let _ = direction.g_add_(&(&theta - &phi));
                    });
                    total += last;
                    steps += 1;
                }
                let direction = direction / batch.len() as f64;
                adam.step(&mut model.params.flat, &direction);
            }
        }
    }
    if steps == 0 {
        0.0
    } else {
        total / steps as f64
    }
}

/// FOMAML's two Adam steps per user on the CPU, row-sparse in the lookup tables
/// (`FomamlForm::RowSparse`).
///
/// In the dense form both steps pass over every parameter, though a user's pairs read only a few
/// rows of each lookup table (the user's own row on the user side, their pairs' items on the item
/// side). Every other row gets a zero gradient in both steps, so Adam only decays its moments and
/// moves it by them; and the inner step's new values of such a row are never read (the query
/// pass reads only the query pairs' rows, and the next user starts from the batch-start weights
/// again). So here the two forward passes read each table through a compact copy of the rows the
/// user's pairs use, the inner step writes the dense parameters and those rows only, and every
/// other row takes both steps' moment decays and the outer step in one pass
/// (`adam_update_idle_then`). Every value read again goes through the same operations in the
/// same order as in the dense form, so the bytes are the same; the passes over the tables' memory
/// drop from two full Adam updates, two copies and two gradient fills to one.
struct RowSparse {
    tables: Vec<Table>,
    /// How many of `tables` are on the user side (they come first).
    user_tables: usize,
    /// Every parameter that is not a lookup table: (index, offset, length) in the flat vector.
    dense: Vec<(usize, usize, usize)>,
    /// The inner step's weights: only the dense parameters' part is written and read.
    adapted: Tensor,
}

/// A lookup table among the flat parameters.
struct Table {
    param: usize,
    offset: usize,
    width: usize,
    rows: usize,
    user_side: bool,
    /// The row of every entity (user or item) of the side.
    row_of: Vec<i64>,
}

impl RowSparse {
    fn new(model: &TwoTower) -> RowSparse {
        let p = &model.params;
        let mut tables = Vec::new();
        for user_side in [true, false] {
            for (param, row_of) in model.table_rows(user_side) {
                let shape = &p.shapes[param];
                let (rows, width) = (shape[0] as usize, shape[1] as usize);
                tables.push(Table { param, offset: p.offsets[param] as usize, width, rows, user_side, row_of });
            }
        }
        let user_tables = tables.iter().filter(|t| t.user_side).count();
        let dense = (0..p.shapes.len())
            .filter(|k| tables.iter().all(|t| t.param != *k))
            .map(|k| (k, p.offsets[k] as usize, p.shapes[k].iter().product::<i64>() as usize))
            .collect();
        let adapted = tch::no_grad(|| p.flat.zeros_like()).set_requires_grad(true);
        RowSparse { tables, user_tables, dense, adapted }
    }

    /// One user's inner step from `start` (the batch-start weights, requiring grad) on support
    /// pairs `s`, and outer step on the model's own weights from query pairs `q`; returns the
    /// query loss / batch size, as the dense form's `lq`.
    #[allow(clippy::too_many_arguments)]
    fn user_steps(
        &mut self,
        model: &TwoTower,
        adam: &mut Adam,
        start: &Tensor,
        user: u32,
        s: &Pairs,
        q: &Pairs,
        cfg: &TrainConfig,
    ) -> f64 {
        let (s_items, q_items) = (pair_items(s), pair_items(q));
        // Per table: the rows either pass reads (ascending), and each lookup's position among them.
        let (mut used, mut at_s, mut at_q) = (Vec::new(), Vec::new(), Vec::new());
        for tab in &self.tables {
            let rows_of = |items: &[i64]| -> Vec<i64> {
                if tab.user_side {
                    vec![tab.row_of[user as usize]]
                } else {
                    items.iter().map(|&i| tab.row_of[i as usize]).collect()
                }
            };
            let (rs, rq) = (rows_of(&s_items), rows_of(&q_items));
            let mut u: Vec<i64> = rs.iter().chain(&rq).copied().collect();
            u.sort_unstable();
            u.dedup();
            let position = |rows: &[i64]| {
                let at: Vec<i64> = rows.iter().map(|r| u.binary_search(r).expect("a used row") as i64).collect();
                Tensor::from_slice(&at)
            };
            at_s.push(position(&rs));
            at_q.push(position(&rq));
            used.push(u);
        }
        let ut = self.user_tables;
        // SAFETY (every `floats` below): the batch-start weights are only read; the moments, the
        // adapted weights and the model's weights are written only here, between the passes,
        // while no libtorch op runs on them (the views that read `adapted` and `start` are made
        // after the writes, or only read).
        let start_w: &[f32] = unsafe { floats(start) };

        // Support pass at the batch-start weights, tables through compact copies.
        let compact = |tab: &Table, rows: &[i64]| -> Vec<f32> {
            let w = tab.width;
            rows.iter().flat_map(|&r| &start_w[tab.offset + r as usize * w..][..w]).copied().collect()
        };
        let leaves: Vec<Tensor> = self
            .tables
            .iter()
            .zip(&used)
            .map(|(tab, u)| Tensor::from_slice(&compact(tab, u)).set_requires_grad(true))
            .collect();
        // A pass's loss (divided by `divisor`) and its gradients: every dense parameter's, then
        // every table's compact rows'.
        let loss = |mut p: Vec<Tensor>, leaves: &[Tensor], at: &[Tensor], pr: &Pairs, divisor: Option<f64>| {
            for ((tab, leaf), u) in self.tables.iter().zip(leaves).zip(&used) {
                p[tab.param] = leaf.view([u.len() as i64, tab.width as i64]);
            }
            let l = user_loss_at(model, &p, user, pr, cfg.margin, Some((&at[..ut], &at[ut..])));
            let l = match divisor {
                Some(by) => l / by,
                None => l,
            };
            let inputs: Vec<&Tensor> = self.dense.iter().map(|&(k, _, _)| &p[k]).chain(leaves).collect();
            let grads: Vec<Tensor> = Tensor::run_backward(&[&l], &inputs, false, false)
                .into_iter()
                .zip(&inputs)
                .map(|(g, x)| if g.defined() { g.contiguous() } else { x.zeros_like() })
                .collect();
            (l, grads)
        };
        let (_, g) = loss(model.params.views(start), &leaves, &at_s, s, None);

        // Inner step: the dense parameters into `adapted`, the used rows into compact copies.
        let ((step, sqrt_bc2), outer_step) = (adam.advance_cpu(), adam.advance_cpu());
        let (m, v) = unsafe { (floats(&adam.m), floats(&adam.v)) };
        {
            let adapted = unsafe { floats(&self.adapted) };
            for (&(_, o, n), g) in self.dense.iter().zip(&g) {
                let (from, to, g) = (&start_w[o..o + n], &mut adapted[o..o + n], unsafe { floats(g) });
                adam_update_to(from, to, g, &mut m[o..o + n], &mut v[o..o + n], step, sqrt_bc2);
            }
        }
        let nd = self.dense.len();
        let mut leaves = Vec::with_capacity(self.tables.len());
        for ((tab, u), g) in self.tables.iter().zip(&used).zip(&g[nd..]) {
            let (w, g) = (tab.width, unsafe { floats(g) });
            let mut out = vec![0f32; u.len() * w];
            for (j, &r) in u.iter().enumerate() {
                let a = tab.offset + r as usize * w;
                let (to, gj) = (&mut out[j * w..(j + 1) * w], &g[j * w..(j + 1) * w]);
                adam_update_to(&start_w[a..a + w], to, gj, &mut m[a..a + w], &mut v[a..a + w], step, sqrt_bc2);
            }
            leaves.push(Tensor::from_slice(&out).set_requires_grad(true));
        }

        // Query pass at the adapted weights, divided by the batch size.
        let (lq, g) = loss(model.params.views(&self.adapted), &leaves, &at_q, q, Some(cfg.batch_size as f64));

        // Outer step on the model's weights; rows no pass read take both steps here.
        let (step, sqrt_bc2) = outer_step;
        let outer = unsafe { floats(&model.params.flat) };
        for (&(_, o, n), g) in self.dense.iter().zip(&g) {
            adam_update(&mut outer[o..o + n], unsafe { floats(g) }, &mut m[o..o + n], &mut v[o..o + n], step, sqrt_bc2);
        }
        for ((tab, u), g) in self.tables.iter().zip(&used).zip(&g[nd..]) {
            let (w, g) = (tab.width, unsafe { floats(g) });
            // The rows between used ones (and after the last: `tab.rows` ends the list) idle.
            let mut from = 0usize;
            for (j, r) in u.iter().map(|&r| r as usize).chain([tab.rows]).enumerate() {
                let (a, b) = (tab.offset + from * w, tab.offset + r * w);
                adam_update_idle_then(&mut outer[a..b], &mut m[a..b], &mut v[a..b], step, sqrt_bc2);
                if r < tab.rows {
                    let gj = &g[j * w..(j + 1) * w];
                    adam_update(&mut outer[b..b + w], gj, &mut m[b..b + w], &mut v[b..b + w], step, sqrt_bc2);
                }
                from = r + 1;
            }
        }
        lq.double_value(&[])
    }
}

/// Shard-local validation HR@10: each user's validation item ranked by this shard's model
/// among all items, the user's rows in this shard masked.
pub fn shard_validation_hr10(model: &TwoTower, d: &ShardData) -> Option<f64> {
    let users: Vec<usize> = (0..d.users.len()).filter(|&t| d.validation[t].is_some()).collect();
    if users.is_empty() {
        return None;
    }
    let p = &model.params.views(&model.params.flat);
    let mut hits = 0usize;
    tch::no_grad(|| {
        let items = model.all_item_vectors(p);
        for chunk in users.chunks(512) {
            let ids: Vec<i64> = chunk.iter().map(|&t| d.users[t] as i64).collect();
            let u = model.user_vectors(p, &Tensor::from_slice(&ids).to_device(model.device));
            let scores =
                Vec::<f32>::try_from(u.matmul(&items.transpose(0, 1)).to_device(tch::Device::Cpu).flatten(0, 1))
                    .expect("f32 scores");
            let n = d.n_items as usize;
            for (row, &t) in chunk.iter().enumerate() {
                let s = &scores[row * n..(row + 1) * n];
                let target = d.validation[t].expect("filtered") as usize;
                let masked = |i: usize| d.support[t].contains(&(i as u32)) || d.query[t].contains(&(i as u32));
                let better = (0..n)
                    .filter(|&i| i != target && !masked(i) && (s[i] > s[target] || (s[i] == s[target] && i < target)))
                    .count();
                hits += (better < 10) as usize;
            }
        }
    });
    Some(hits as f64 / users.len() as f64)
}

/// Trains a fresh model for `epochs` epochs, calling `after_epoch` after each one.
pub fn train_shard(
    model: &mut TwoTower,
    d: &ShardData,
    cfg: &TrainConfig,
    seed: u64,
    mut after_epoch: impl FnMut(usize, &TwoTower, &EpochRecord) -> Result<()>,
) -> Result<Vec<EpochRecord>> {
    let mut adam = Adam::new(&model.params.flat, cfg.learning_rate_at(1));
    let mut records = Vec::with_capacity(cfg.epochs);
    for epoch in 1..=cfg.epochs {
        let start = Instant::now();
        let loss = train_epoch(model, d, cfg, &mut adam, seed, epoch);
        let seconds = start.elapsed().as_secs_f64();
        let record = EpochRecord { epoch, loss, seconds, validation_hr10: shard_validation_hr10(model, d) };
        after_epoch(epoch, model, &record)?;
        records.push(record);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hinge_loss_by_hand() {
        let pos = Tensor::from_slice(&[2.0f32, 0.5]);
        let neg = Tensor::from_slice(&[0.5f32, 1.0]);
        // max(0, 1 - 1.5) = 0 and max(0, 1 + 0.5) = 1.5: mean 0.75.
        assert!((hinge(&pos, &neg, 1.0).double_value(&[]) - 0.75).abs() < 1e-6);
        assert!((hinge(&pos, &neg, 0.0).double_value(&[]) - 0.25).abs() < 1e-6);
    }

    /// The old update, without the flush: (p, m, v) after one step `t` from (p, m, v, g).
    fn adam_unflushed(lr: f64, t: i32, p: f32, m: f32, v: f32, g: f32) -> (f32, f32, f32) {
        let (b1, b2) = (0.9f32, 0.999f32);
        let step = (lr / (1.0 - 0.9f64.powi(t))) as f32;
        let sqrt_bc2 = (1.0 - 0.999f64.powi(t)).sqrt() as f32;
        let m = b1 * m + (1.0 - b1) * g;
        let v = b2 * v + (1.0 - b2) * g * g;
        (p - step * m / (v.sqrt() / sqrt_bc2 + 1e-8), m, v)
    }

    /// Seeded (weights, gradients, first moments, second moments) over the ranges a training
    /// run holds: gradients that are often exactly zero, moments down to the subnormal range; a
    /// length that leaves a remainder after every vector width.
    fn adam_case(n: usize) -> [Vec<f32>; 4] {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut draw = |scale: f32, zero_share: f64| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    if rng.gen_bool(zero_share) {
                        0.0
                    } else {
                        let e: i32 = rng.gen_range(-40..=0);
                        (rng.gen::<f32>() - 0.5) * scale * 2f32.powi(e)
                    }
                })
                .collect()
        };
        let (p0, g0, m0) = (draw(2.0, 0.0), draw(1.0, 0.6), draw(1e-2, 0.1));
        let v0: Vec<f32> = draw(1e-4, 0.1).into_iter().map(f32::abs).collect();
        [p0, g0, m0, v0]
    }

    fn assert_same_bits(what: &str, a: &[f32], b: &[f32]) {
        let differ = a.iter().zip(b).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert_eq!((differ, a.len()), (0, b.len()), "{what}: {differ} of {} values differ", a.len());
    }

    const ADAM_STEPS: [(f32, f32); 3] = [(1e-3, 0.0447), (2e-4 / 0.1, 0.031622775), (1e-2, 1.0)];

    /// `adam_update_to` equals a copy then `adam_update`; `adam_update_idle_then` equals two
    /// `adam_update`s with a zero gradient (the first one's weights thrown away); at every vector
    /// width this CPU has.
    #[test]
    fn the_fused_adam_passes_write_the_bytes_of_plain_updates() {
        let n = 4099;
        let [p0, g0, m0, v0] = adam_case(n);
        type To = fn(&[f32], &mut [f32], &[f32], &mut [f32], &mut [f32], f32, f32);
        type Idle = fn(&mut [f32], &mut [f32], &mut [f32], f32, f32);
        let mut widths: Vec<(&str, To, Idle)> = vec![
            ("dispatched", adam_update_to, adam_update_idle_then),
            ("portable", adam_update_to_portable, adam_update_idle_then_portable),
        ];
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY (all): called only where the CPU has the feature.
            if std::is_x86_feature_detected!("avx2") {
                widths.push((
                    "avx2",
                    |a, b, g, m, v, s, c| unsafe { adam_update_to_avx2(a, b, g, m, v, s, c) },
                    |p, m, v, s, c| unsafe { adam_update_idle_then_avx2(p, m, v, s, c) },
                ));
            }
            if std::is_x86_feature_detected!("avx512f") {
                widths.push((
                    "avx512",
                    |a, b, g, m, v, s, c| unsafe { adam_update_to_avx512(a, b, g, m, v, s, c) },
                    |p, m, v, s, c| unsafe { adam_update_idle_then_avx512(p, m, v, s, c) },
                ));
            }
        }
        let zero = vec![0f32; n];
        for (step, sqrt_bc2) in ADAM_STEPS {
            let (mut p1, mut m1, mut v1) = (p0.clone(), m0.clone(), v0.clone());
            adam_update_portable(&mut p1, &g0, &mut m1, &mut v1, step, sqrt_bc2);
            let (mut p2, mut m2, mut v2) = (p0.clone(), m0.clone(), v0.clone());
            adam_update_portable(&mut p0.clone(), &zero, &mut m2, &mut v2, step * 1.5, sqrt_bc2 * 0.5);
            adam_update_portable(&mut p2, &zero, &mut m2, &mut v2, step, sqrt_bc2);
            assert!(p2.iter().zip(&p0).filter(|(a, b)| a != b).count() > n / 2, "idle rows move too");
            for (width, to, idle) in &widths {
                let (mut out, mut m, mut v) = (vec![7f32; n], m0.clone(), v0.clone());
                to(&p0, &mut out, &g0, &mut m, &mut v, step, sqrt_bc2);
                for (name, a, b) in [("p", &p1, &out), ("m", &m1, &m), ("v", &v1, &v)] {
                    assert_same_bits(&format!("{width} adam_update_to {name} at step {step}"), a, b);
                }
                let (mut p, mut m, mut v) = (p0.clone(), m0.clone(), v0.clone());
                idle(&mut p, &mut m, &mut v, step, sqrt_bc2);
                for (name, a, b) in [("p", &p2, &p), ("m", &m2, &m), ("v", &v2, &v)] {
                    assert_same_bits(&format!("{width} adam_update_idle_then {name} at step {step}"), a, b);
                }
            }
        }
    }

    #[test]
    fn the_vectorized_adam_updates_write_the_bytes_of_the_portable_one() {
        let n = 4099;
        let [p0, g0, m0, v0] = adam_case(n);
        type Update = fn(&mut [f32], &[f32], &mut [f32], &mut [f32], f32, f32);
        let mut updates: Vec<(&str, Update)> = vec![("dispatched", adam_update)];
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY (both): called only where the CPU has the feature.
            if std::is_x86_feature_detected!("avx2") {
                updates.push(("avx2", |p, g, m, v, s, b| unsafe { adam_update_avx2(p, g, m, v, s, b) }));
            }
            if std::is_x86_feature_detected!("avx512f") {
                updates.push(("avx512", |p, g, m, v, s, b| unsafe { adam_update_avx512(p, g, m, v, s, b) }));
            }
        }
        for (step, sqrt_bc2) in ADAM_STEPS {
            let (mut p1, mut m1, mut v1) = (p0.clone(), m0.clone(), v0.clone());
            adam_update_portable(&mut p1, &g0, &mut m1, &mut v1, step, sqrt_bc2);
            assert!(p1.iter().zip(&p0).filter(|(a, b)| a != b).count() > n / 2, "the update moves weights");
            for (width, update) in &updates {
                let (mut p2, mut m2, mut v2) = (p0.clone(), m0.clone(), v0.clone());
                update(&mut p2, &g0, &mut m2, &mut v2, step, sqrt_bc2);
                for (name, a, b) in [("p", &p1, &p2), ("m", &m1, &m2), ("v", &v1, &v2)] {
                    assert_same_bits(&format!("{width} {name} at step {step}"), a, b);
                }
            }
        }
    }

    #[test]
    fn adam_flushes_subnormal_moments_and_leaves_the_weights_bytes_alone() {
        let ulps = |k: u32| f32::from_bits(k);
        // Under round-to-nearest a first moment a few ulps above zero never decays to zero.
        let mut stuck = ulps(4);
        for t in 1..=1000 {
            stuck = adam_unflushed(1e-3, t, 0.5, stuck, 0.0, 0.0).1;
        }
        assert!(stuck != 0.0 && stuck.abs() < f32::MIN_POSITIVE, "{stuck:e}");

        let p0 = [0.5f32, -0.03, 1e-6, 2.0, -0.7, 0.01, 3e-3, -1e-4, 0.2, 4e-2];
        let m0 = [ulps(3), -ulps(4), 6e-39, 1e-3, ulps(1), 0.0, -2e-39, 1e-7, 1.3e-38, 2e-3];
        let v0 = [ulps(7), 1e-39, ulps(300), 1e-6, 0.0, ulps(2), 1e-9, 5e-39, 1e-12, 1e-5];
        let g0 = [0.0f32, 0.0, 0.0, 1e-2, 0.0, 0.0, 0.0, 3e-4, 0.0, -0.1];
        let (lr, t0) = (1e-3, 40);
        let mut flat = Tensor::from_slice(&p0);
        let mut adam = Adam::from_state(lr, t0, Tensor::from_slice(&m0), Tensor::from_slice(&v0));
        adam.step(&mut flat, &Tensor::from_slice(&g0));
        let got = |t: &Tensor| Vec::<f32>::try_from(t).unwrap();
        let (p1, (m1, v1)) = (got(&flat), adam.moments());
        let (m1, v1) = (got(m1), got(v1));
        let mut flushed = 0;
        for i in 0..p0.len() {
            let (p, m, v) = adam_unflushed(lr, t0 + 1, p0[i], m0[i], v0[i], g0[i]);
            assert_eq!(p1[i].to_bits(), p.to_bits(), "weight {i}: {:e} vs {p:e}", p1[i]);
            for (name, new, old) in [("m", m1[i], m), ("v", v1[i], v)] {
                if old.abs() < f32::MIN_POSITIVE {
                    assert_eq!(new, 0.0, "{name}[{i}] {old:e} is subnormal: flushed");
                    flushed += usize::from(old != 0.0);
                } else {
                    assert_eq!(new.to_bits(), old.to_bits(), "{name}[{i}]");
                }
            }
        }
        assert!(flushed >= 8, "the case must exercise the flush: {flushed}");
    }

    fn shard() -> ShardData {
        ShardData {
            shard: 0,
            n_items: 12,
            users: vec![0, 1, 2],
            support: vec![vec![0, 1, 2], vec![3, 4], vec![5, 6]],
            query: vec![vec![7], vec![8], vec![]],
            excluded: vec![vec![0, 1, 2, 7, 9], vec![3, 4, 8], vec![5, 6]],
            validation: vec![Some(9), None, None],
            present: vec![true, true, true],
        }
    }

    #[test]
    fn negatives_avoid_the_users_positives_and_validation_item() {
        let d = shard();
        let pool: Vec<(usize, u32)> =
            (0..3).flat_map(|t| d.support[t].iter().chain(&d.query[t]).map(move |&i| (t, i))).collect();
        let mut rng = stream(1, 0, "test", 0);
        for _ in 0..200 {
            let p = pairs(&mut rng, &d, 0, &d.support[0], &pool);
            assert_eq!(p.pos, vec![0, 1, 2]);
            assert_eq!((p.uniform.len(), p.in_batch.len()), (3, 3));
            for n in p.uniform.iter().chain(&p.in_batch) {
                assert!(![0, 1, 2, 7, 9].contains(n), "negative {n} is excluded for user 0");
            }
            // in-batch negatives are positives of the other users of the batch
            assert!(p.in_batch.iter().all(|n| [3, 4, 8, 5, 6].contains(n)));
        }
    }

    #[test]
    fn maml_second_order_gradient_matches_finite_differences() {
        // One-layer model y = tanh(x W + b), squared losses; f64 for a precise reference.
        let x_s = Tensor::from_slice(&[0.3f64, -1.2, 0.7, 0.5, 0.1, -0.4]).view([2, 3]);
        let y_s = Tensor::from_slice(&[0.5f64, -0.2, 0.1, 0.9]).view([2, 2]);
        let x_q = Tensor::from_slice(&[1.1f64, 0.2, -0.3]).view([1, 3]);
        let y_q = Tensor::from_slice(&[-0.6f64, 0.4]).view([1, 2]);
        let forward = |theta: &Tensor, x: &Tensor| {
            let w = theta.narrow(0, 0, 6).view([3, 2]);
            let b = theta.narrow(0, 6, 2);
            (x.matmul(&w) + b).tanh()
        };
        let loss = |theta: &Tensor, x: &Tensor, y: &Tensor| (forward(theta, x) - y).square().sum(Kind::Double);
        let meta = |theta: &Tensor| {
            let inner = |t: &Tensor| loss(t, &x_s, &y_s);
            let outer = |t: &Tensor| loss(t, &x_q, &y_q);
            maml_meta_gradient(theta, inner, outer, 0.3, 2)
        };
        let theta0 = Tensor::from_slice(&[0.2f64, -0.1, 0.4, 0.3, -0.5, 0.1, 0.05, -0.02]);
        let theta = theta0.copy().set_requires_grad(true);
        let (g, _) = meta(&theta);
        let g = Vec::<f64>::try_from(&g).unwrap();
        // Central differences of the whole two-step objective.
        let eps = 1e-6;
        for (i, &gi) in g.iter().enumerate() {
            let value = |delta: f64| {
                let t = theta0.copy();
                let _ = t.get(i as i64).g_add_scalar_(delta);
                let t = t.set_requires_grad(true);
                meta(&t).1
            };
            let fd = (value(eps) - value(-eps)) / (2.0 * eps);
            assert!(
                (fd - gi).abs() < 1e-6 * (1.0 + fd.abs()),
                "parameter {i}: autograd {gi} vs finite difference {fd}"
            );
        }
        // And the first-order approximation is measurably different: the test can fail.
        let first_order = {
            let t = theta0.copy().set_requires_grad(true);
            let gs = Tensor::run_backward(&[loss(&t, &x_s, &y_s)], &[&t], false, false).remove(0);
            let adapted = (&theta0 - gs * 0.3).set_requires_grad(true);
            let gs2 = Tensor::run_backward(&[loss(&adapted, &x_s, &y_s)], &[&adapted], false, false).remove(0);
            let adapted2 = (adapted.detach() - gs2 * 0.3).set_requires_grad(true);
            Vec::<f64>::try_from(
                Tensor::run_backward(&[loss(&adapted2, &x_q, &y_q)], &[&adapted2], false, false).remove(0),
            )
            .unwrap()
        };
        assert!(first_order.iter().zip(&g).any(|(a, b)| (a - b).abs() > 1e-3));
    }

    #[test]
    fn a_fresh_adam_step_moves_each_parameter_by_the_learning_rate() {
        let mut flat = Tensor::from_slice(&[1.0f32, 1.0, 1.0]);
        let g = Tensor::from_slice(&[0.5f32, -2.0, 0.0]);
        let mut adam = Adam::new(&flat, 0.1);
        adam.step(&mut flat, &g);
        let v = Vec::<f32>::try_from(&flat).unwrap();
        assert!((v[0] - 0.9).abs() < 1e-5 && (v[1] - 1.1).abs() < 1e-5 && v[2] == 1.0, "{v:?}");
    }
}
