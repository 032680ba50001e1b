//! The two-tower model (reference: alshabae/EEMU). Each side embeds its features at
//! `feature_dim` (ID and categorical features through tables, multi-hot as the sum of its
//! labels' embeddings, dense vectors through a Linear), concatenates them, and runs hidden blocks
//! Linear -> LayerNorm -> GELU and a bare final Linear to `embedding_dim`. Score = dot product.
//!
//! Parameters are a flat list of tensors (`Params`) so meta-learning can run the same forward
//! pass on adapted copies. Shard isolation: the user-side tables hold only the users (and
//! feature labels) present in the shard's rows, with row 0 for "unknown"; every embedding row is
//! initialised from a key of (seed, shard, table, label), never from its position, so which
//! other rows exist cannot change it. Item tables cover the item catalog, which no deletion
//! changes.
use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use sha2::{Digest, Sha256};
use tch::{Device, Kind, Tensor};

use crate::config::ModelConfig;
use crate::data::{Entities, FeatureValues};

/// How one side's inputs are embedded, and where its parameters sit in `Params`.
#[derive(Debug, Clone)]
pub struct SideSpec {
    /// Lookup tables: (name, rows). Index tensors give each entity's row.
    pub tables: Vec<(String, i64)>,
    /// Multi-hot features: (name, vocabulary size).
    pub multi_hot: Vec<(String, i64)>,
    /// Dense features: (name, dim).
    pub dense: Vec<(String, i64)>,
    /// Tower widths, input to output (input = features x feature_dim).
    pub widths: Vec<i64>,
    /// Index of this side's first parameter.
    pub first_param: usize,
}

/// Per-entity inputs of one side, on the model's device.
pub struct SideInputs {
    /// One int64 index tensor [n] per table.
    pub tables: Vec<Tensor>,
    /// One float tensor [n, V] per multi-hot feature.
    pub multi_hot: Vec<Tensor>,
    /// One float tensor [n, dim] per dense feature.
    pub dense: Vec<Tensor>,
}

/// All parameters in one flat leaf tensor (so an optimizer step or a copy is a handful of
/// kernels, not one per tensor), with the name, shape and offset of each.
pub struct Params {
    pub names: Vec<String>,
    pub shapes: Vec<Vec<i64>>,
    pub offsets: Vec<i64>,
    /// The flat parameter vector; requires grad.
    pub flat: Tensor,
}

impl Params {
    /// Views of a flat vector (this one, or an adapted copy) shaped as the parameters.
    /// One split node, so the backward pass concatenates the gradients once.
    pub fn views(&self, flat: &Tensor) -> Vec<Tensor> {
        let sizes: Vec<i64> = self.shapes.iter().map(|s| s.iter().product()).collect();
        flat.split_with_sizes(sizes.as_slice(), 0)
            .into_iter()
            .zip(&self.shapes)
            .map(|(t, shape)| t.view(shape.as_slice()))
            .collect()
    }

    /// A detached copy of the flat vector.
    pub fn copy(&self) -> Tensor {
        tch::no_grad(|| self.flat.detach().copy())
    }

    /// Overwrites the parameters in place.
    pub fn load(&mut self, values: &Tensor) {
        tch::no_grad(|| {
            self.flat.copy_(values);
        });
    }

    /// Number of scalar parameters.
    pub fn count(&self) -> i64 {
        self.flat.numel() as i64
    }
}

/// A two-tower model for one shard: its layout, parameters and the inputs of every user and item.
pub struct TwoTower {
    pub user: SideSpec,
    pub item: SideSpec,
    pub params: Params,
    pub users: SideInputs,
    pub items: SideInputs,
    pub device: Device,
}

/// One lookup table of a side: its labels and the row of every entity.
struct TableLabels {
    name: String,
    /// Sorted distinct labels that get a row (row = position, + 1 when row 0 is "unknown").
    labels: Vec<String>,
    /// Row of every entity (0 = unknown when the label has no row).
    rows: Vec<i64>,
}

/// A table whose labels are those of the `present` entities; every entity gets the row of its
/// label when the table has one.
fn table_from(name: &str, per_entity: Vec<String>, present: &[bool], with_unknown: bool) -> TableLabels {
    let mut labels: Vec<String> = per_entity.iter().zip(present).filter(|(_, &p)| p).map(|(l, _)| l.clone()).collect();
    labels.sort();
    labels.dedup();
    let index: HashMap<&str, i64> =
        labels.iter().enumerate().map(|(i, l)| (l.as_str(), i as i64 + with_unknown as i64)).collect();
    let rows = per_entity.iter().map(|l| index.get(l.as_str()).copied().unwrap_or(0)).collect();
    TableLabels { name: name.to_string(), labels, rows }
}

type DenseInputs = Vec<(String, Vec<f32>, i64)>;

/// Builds the lookup tables, multi-hot and dense inputs of one side. Vocabularies come from the
/// `present` entities only (the shard's users; every item); inputs are built for all entities.
fn side_tables(
    entities: &Entities,
    present: &[bool],
    with_unknown: bool,
) -> (Vec<TableLabels>, DenseInputs, DenseInputs) {
    let n = entities.len();
    let ids = (0..n as u32).map(|e| entities.ids.display(e)).collect();
    let mut tables = vec![table_from("id", ids, present, with_unknown)];
    let mut multi_hot = Vec::new();
    let mut dense = Vec::new();
    for f in &entities.features {
        match &f.values {
            FeatureValues::Categorical { vocabulary, codes } => {
                let labels = codes.iter().map(|&c| vocabulary[c as usize].clone()).collect();
                tables.push(table_from(&f.name, labels, present, with_unknown));
            }
            FeatureValues::MultiHot { vocabulary, offsets, codes } => {
                let set = |e: usize| {
                    codes[offsets[e] as usize..offsets[e + 1] as usize].iter().map(|&c| &vocabulary[c as usize])
                };
                let mut used: Vec<&String> = (0..n).filter(|&e| present[e]).flat_map(set).collect();
                used.sort();
                used.dedup();
                let pos: HashMap<&str, usize> = used.iter().enumerate().map(|(i, l)| (l.as_str(), i)).collect();
                let v = used.len().max(1);
                let mut m = vec![0f32; n * v];
                for e in 0..n {
                    for label in set(e) {
                        if let Some(&j) = pos.get(label.as_str()) {
                            m[e * v + j] = 1.0;
                        }
                    }
                }
                multi_hot.push((f.name.clone(), m, v as i64));
            }
            FeatureValues::Dense { dim, values } => dense.push((f.name.clone(), values.clone(), *dim as i64)),
        }
    }
    (tables, multi_hot, dense)
}

/// A keyed RNG: the same key always gives the same stream.
fn keyed_rng(parts: &[&[u8]]) -> ChaCha8Rng {
    let mut h = Sha256::new();
    h.update(b"eemu-init-v1");
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    ChaCha8Rng::from_seed(h.finalize().into())
}

/// Parameter initialisation: seed and shard index only (index 0 for every shard under
/// `init = "shared"`).
struct Init {
    seed: u64,
    shard: u64,
}

impl Init {
    fn rng(&self, parts: &[&[u8]]) -> ChaCha8Rng {
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 2);
        let s = self.seed.to_le_bytes();
        let k = self.shard.to_le_bytes();
        all.push(&s);
        all.push(&k);
        all.extend_from_slice(parts);
        keyed_rng(&all)
    }

    /// Embedding table: row 0 (unknown, when present) is zero; row of label l ~ N(0, 1) keyed by l.
    fn table(&self, side: &str, t: &TableLabels, with_unknown: bool, dim: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity((t.labels.len() + with_unknown as usize) * dim);
        if with_unknown {
            out.extend(std::iter::repeat_n(0.0, dim));
        }
        for label in &t.labels {
            let mut rng = self.rng(&[side.as_bytes(), t.name.as_bytes(), label.as_bytes()]);
            out.extend((0..dim).map(|_| rng.sample::<f32, _>(StandardNormal)));
        }
        out
    }

    fn uniform(&self, name: &str, n: usize, bound: f32) -> Vec<f32> {
        let mut rng = self.rng(&[name.as_bytes()]);
        (0..n).map(|_| rng.gen_range(-bound..bound)).collect()
    }

    fn normal(&self, name: &str, n: usize, std: f32) -> Vec<f32> {
        let mut rng = self.rng(&[name.as_bytes()]);
        (0..n).map(|_| std * rng.sample::<f32, _>(StandardNormal)).collect()
    }
}

/// Collects parameters in a fixed order.
struct Builder<'a> {
    init: &'a Init,
    names: Vec<String>,
    shapes: Vec<Vec<i64>>,
    offsets: Vec<i64>,
    values: Vec<f32>,
}

impl Builder<'_> {
    fn push(&mut self, name: String, values: Vec<f32>, shape: &[i64]) {
        debug_assert_eq!(values.len() as i64, shape.iter().product::<i64>());
        self.names.push(name);
        self.shapes.push(shape.to_vec());
        self.offsets.push(self.values.len() as i64);
        self.values.extend(values);
    }

    /// Linear layer with PyTorch's default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    fn linear(&mut self, name: &str, fan_in: i64, fan_out: i64) {
        let bound = 1.0 / (fan_in as f32).sqrt();
        let w = self.init.uniform(&format!("{name}.weight"), (fan_in * fan_out) as usize, bound);
        self.push(format!("{name}.weight"), w, &[fan_out, fan_in]);
        let b = self.init.uniform(&format!("{name}.bias"), fan_out as usize, bound);
        self.push(format!("{name}.bias"), b, &[fan_out]);
    }

    // One call per side; the inputs are that side's already-built pieces.
    #[allow(clippy::too_many_arguments)]
    fn side(
        &mut self,
        side: &str,
        tables: &[TableLabels],
        multi_hot: &DenseInputs,
        dense: &DenseInputs,
        with_unknown: bool,
        hidden: &[usize],
        config: &ModelConfig,
    ) -> SideSpec {
        let d = config.feature_dim as i64;
        let first_param = self.names.len();
        let mut spec = SideSpec { tables: vec![], multi_hot: vec![], dense: vec![], widths: vec![], first_param };
        for t in tables {
            let rows = (t.labels.len() + with_unknown as usize) as i64;
            let values = self.init.table(side, t, with_unknown, d as usize);
            self.push(format!("{side}.table.{}", t.name), values, &[rows, d]);
            spec.tables.push((t.name.clone(), rows));
        }
        for (name, _, v) in multi_hot {
            // Xavier normal, as the reference's genre matrix.
            let std = (2.0 / (*v + d) as f32).sqrt();
            let values = self.init.normal(&format!("{side}.multi_hot.{name}"), (*v * d) as usize, std);
            self.push(format!("{side}.multi_hot.{name}"), values, &[*v, d]);
            spec.multi_hot.push((name.clone(), *v));
        }
        for (name, _, dim) in dense {
            self.linear(&format!("{side}.dense.{name}"), *dim, d);
            spec.dense.push((name.clone(), *dim));
        }
        let features = (tables.len() + multi_hot.len() + dense.len()) as i64;
        spec.widths.push(features * d);
        spec.widths.extend(hidden.iter().map(|&w| w as i64));
        spec.widths.push(config.embedding_dim as i64);
        for (i, w) in spec.widths.windows(2).enumerate() {
            self.linear(&format!("{side}.tower.{i}"), w[0], w[1]);
            if i + 2 < spec.widths.len() {
                self.push(format!("{side}.tower.{i}.norm.weight"), vec![1.0; w[1] as usize], &[w[1]]);
                self.push(format!("{side}.tower.{i}.norm.bias"), vec![0.0; w[1] as usize], &[w[1]]);
            }
        }
        spec
    }
}

fn inputs(tables: &[TableLabels], multi_hot: &DenseInputs, dense: &DenseInputs, n: i64, device: Device) -> SideInputs {
    SideInputs {
        tables: tables.iter().map(|t| Tensor::from_slice(&t.rows).to_device(device)).collect(),
        multi_hot: multi_hot.iter().map(|(_, m, v)| Tensor::from_slice(m).reshape([n, *v]).to_device(device)).collect(),
        dense: dense.iter().map(|(_, x, dim)| Tensor::from_slice(x).reshape([n, *dim]).to_device(device)).collect(),
    }
}

impl TwoTower {
    /// A freshly initialised model for shard `shard`, whose rows hold the users marked in
    /// `present_users`.
    pub fn new(
        config: &ModelConfig,
        users: &Entities,
        items: &Entities,
        present_users: &[bool],
        seed: u64,
        shard: usize,
        device: Device,
    ) -> TwoTower {
        let key = match config.init {
            crate::config::Init::PerShard => shard as u64,
            crate::config::Init::Shared => 0,
        };
        let init = Init { seed, shard: key };
        let (ut, um, ud) = side_tables(users, present_users, true);
        let all_items = vec![true; items.len()];
        let (it, im, id) = side_tables(items, &all_items, false);
        let mut b = Builder { init: &init, names: vec![], shapes: vec![], offsets: vec![], values: vec![] };
        let user = b.side("user", &ut, &um, &ud, true, &config.user_tower, config);
        let item = b.side("item", &it, &im, &id, false, &config.item_tower, config);
        let flat = Tensor::from_slice(&b.values).to_device(device).set_requires_grad(true);
        TwoTower {
            user,
            item,
            params: Params { names: b.names, shapes: b.shapes, offsets: b.offsets, flat },
            users: inputs(&ut, &um, &ud, users.len() as i64, device),
            items: inputs(&it, &im, &id, items.len() as i64, device),
            device,
        }
    }

    /// User vectors [n, d] for entity rows `users` (int64 [n]) under parameters `p`.
    pub fn user_vectors(&self, p: &[Tensor], users: &Tensor) -> Tensor {
        side_forward(&self.user, &self.users, p, users, None)
    }

    /// Item vectors [n, d] for item rows `items` (int64 [n]) under parameters `p`.
    pub fn item_vectors(&self, p: &[Tensor], items: &Tensor) -> Tensor {
        side_forward(&self.item, &self.items, p, items, None)
    }

    /// `user_vectors` with lookup table j read at rows `table_rows[j]` (int64 [n], one per
    /// user) of `p`'s table j, instead of at the model's own rows of those users: for a `p`
    /// whose tables hold only the rows a step reads (FOMAML's row-sparse step).
    pub fn user_vectors_at(&self, p: &[Tensor], users: &Tensor, table_rows: &[Tensor]) -> Tensor {
        side_forward(&self.user, &self.users, p, users, Some(table_rows))
    }

    /// `item_vectors` with the lookup tables read at `table_rows`, as `user_vectors_at`.
    pub fn item_vectors_at(&self, p: &[Tensor], items: &Tensor, table_rows: &[Tensor]) -> Tensor {
        side_forward(&self.item, &self.items, p, items, Some(table_rows))
    }

    /// The row of every entity in each lookup table of one side (users, or items), as
    /// `(parameter index, rows)` per table, in the side's table order.
    pub fn table_rows(&self, user_side: bool) -> Vec<(usize, Vec<i64>)> {
        let (spec, inputs) = if user_side { (&self.user, &self.users) } else { (&self.item, &self.items) };
        let cpu = |t: &Tensor| Vec::<i64>::try_from(t.to_device(Device::Cpu)).expect("int64 row map");
        inputs.tables.iter().enumerate().map(|(j, t)| (spec.first_param + j, cpu(t))).collect()
    }

    /// Vectors of every item.
    pub fn all_item_vectors(&self, p: &[Tensor]) -> Tensor {
        let n = self.items.tables[0].size()[0];
        self.item_vectors(p, &Tensor::arange(n, (Kind::Int64, self.device)))
    }

    /// The parameters as (name, tensor) pairs on the CPU, for saving.
    pub fn named_cpu(&self) -> Vec<(String, Tensor)> {
        let flat = self.params.flat.detach().to_device(Device::Cpu);
        self.params.names.iter().cloned().zip(self.params.views(&flat).into_iter().map(|t| t.copy())).collect()
    }

    /// Loads parameters saved by `named_cpu` (names and shapes must match).
    pub fn load_named(&mut self, named: Vec<(String, Tensor)>) -> Result<()> {
        let mut by_name: BTreeMap<String, Tensor> = named.into_iter().collect();
        let mut values = Vec::with_capacity(self.params.names.len());
        for (name, shape) in self.params.names.iter().zip(&self.params.shapes) {
            let t = by_name.remove(name).with_context(|| format!("saved model lacks parameter {name}"))?;
            if &t.size() != shape {
                bail!("parameter {name}: saved shape {:?}, model shape {:?}", t.size(), shape);
            }
            values.push(t.to_device(self.device).flatten(0, -1));
        }
        if let Some(extra) = by_name.keys().next() {
            bail!("saved model has an unknown parameter {extra}");
        }
        self.params.load(&Tensor::cat(&values, 0));
        Ok(())
    }
}

/// Rows `idx` of `t`: the same values as `t.index_select(0, idx)`, gathered through
/// `embedding` for the backward pass. On CUDA `index_select`'s backward adds the gradients of
/// repeated rows with atomic adds, in whatever order the threads run (PyTorch lists it among the
/// nondeterministic operations), so two trainings can differ in the last bits; `embedding`'s
/// backward is not on that list. On the CPU both add in index order: the same bytes (measured:
/// every training algorithm gives the model file of `index_select`).
pub fn gather_rows(t: &Tensor, idx: &Tensor) -> Tensor {
    Tensor::embedding(t, idx, -1, false, false)
}

/// One side's vectors of entity rows `rows`; lookup table j is read at the model's rows of
/// those entities, or at `table_rows[j]` where given.
fn side_forward(
    spec: &SideSpec,
    inputs: &SideInputs,
    p: &[Tensor],
    rows: &Tensor,
    table_rows: Option<&[Tensor]>,
) -> Tensor {
    let mut k = spec.first_param;
    let mut parts = Vec::with_capacity(spec.tables.len() + spec.multi_hot.len() + spec.dense.len());
    for (j, idx) in inputs.tables.iter().enumerate() {
        match table_rows {
            Some(at) => parts.push(gather_rows(&p[k], &at[j])),
            None => parts.push(gather_rows(&p[k], &idx.index_select(0, rows))),
        }
        k += 1;
    }
    for m in &inputs.multi_hot {
        parts.push(m.index_select(0, rows).matmul(&p[k]));
        k += 1;
    }
    for x in &inputs.dense {
        parts.push(x.index_select(0, rows).linear(&p[k], Some(&p[k + 1])));
        k += 2;
    }
    let mut h = Tensor::cat(&parts, 1);
    let layers = spec.widths.len() - 1;
    for i in 0..layers {
        h = h.linear(&p[k], Some(&p[k + 1]));
        k += 2;
        if i + 1 < layers {
            let w = spec.widths[i + 1];
            h = h.layer_norm([w], Some(&p[k]), Some(&p[k + 1]), 1e-5, false).gelu("none");
            k += 2;
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Feature, Ids};

    fn entities(ids: Vec<i64>, labels: &[&str]) -> Entities {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        Entities { ids: Ids::Int(ids), features: vec![Feature::categorical("f", &labels)] }
    }

    #[test]
    fn gather_rows_gives_index_selects_values_and_gradients() {
        tch::manual_seed(3);
        let t = Tensor::randn([6, 4], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        // Repeated rows: their gradients add up.
        let idx = Tensor::from_slice(&[4i64, 0, 4, 2, 4, 0]);
        let w = Tensor::randn([6, 4], (Kind::Float, Device::Cpu));
        let (a, b) = (gather_rows(&t, &idx), t.index_select(0, &idx));
        assert!(a.equal(&b));
        let ga = Tensor::run_backward(&[(&a * &w).sum(Kind::Float)], &[&t], false, false).remove(0);
        let gb = Tensor::run_backward(&[(&b * &w).sum(Kind::Float)], &[&t], false, false).remove(0);
        assert!(ga.equal(&gb), "{ga} {gb}");
        // Row 4 was picked three times, row 1 never.
        let want = w.get(0) + w.get(2) + w.get(4);
        assert!(ga.get(4).allclose(&want, 1e-6, 1e-6, false));
        assert_eq!(ga.get(1).abs().sum(Kind::Float).double_value(&[]), 0.0);
    }

    fn small() -> ModelConfig {
        ModelConfig { feature_dim: 4, user_tower: vec![8], item_tower: vec![6], embedding_dim: 5, ..Default::default() }
    }

    #[test]
    fn shapes_follow_the_config() {
        let users = entities(vec![1, 2, 3], &["a", "b", "a"]);
        let items = entities(vec![10, 11], &["x", "y"]);
        let m = TwoTower::new(&small(), &users, &items, &[true, false, true], 0, 0, Device::Cpu);
        let p = m.params.views(&m.params.flat);
        let u = m.user_vectors(&p, &Tensor::from_slice(&[0i64, 1, 2]));
        let i = m.all_item_vectors(&p);
        assert_eq!(u.size(), vec![3, 5]);
        assert_eq!(i.size(), vec![2, 5]);
        // user id table: unknown + 2 present users; categorical: unknown + {"a"}.
        assert_eq!(m.user.tables, vec![("id".to_string(), 3), ("f".to_string(), 2)]);
        assert_eq!(m.user.widths, vec![8, 8, 5]);
    }

    #[test]
    fn a_users_embedding_row_does_not_depend_on_which_other_users_exist() {
        let items = entities(vec![10, 11], &["x", "y"]);
        let a = TwoTower::new(
            &small(),
            &entities(vec![1, 2, 3], &["a", "b", "a"]),
            &items,
            &[true, true, true],
            5,
            2,
            Device::Cpu,
        );
        let b = TwoTower::new(&small(), &entities(vec![1, 3], &["a", "a"]), &items, &[true, true], 5, 2, Device::Cpu);
        // user 3 is row 3 in `a` (unknown, 1, 2, 3) and row 2 in `b`.
        let (pa, pb) = (a.params.views(&a.params.flat), b.params.views(&b.params.flat));
        assert!(pa[0].get(3).equal(&pb[0].get(2)));
        // towers do not depend on the users at all
        let last = pa.len() - 1;
        assert!(pa[last].equal(&pb[last]));
    }

    #[test]
    fn other_shards_and_seeds_start_from_other_weights() {
        let users = entities(vec![1, 2], &["a", "b"]);
        let items = entities(vec![10, 11], &["x", "y"]);
        let base = TwoTower::new(&small(), &users, &items, &[true, true], 0, 0, Device::Cpu);
        let shard = TwoTower::new(&small(), &users, &items, &[true, true], 0, 1, Device::Cpu);
        let seed = TwoTower::new(&small(), &users, &items, &[true, true], 1, 0, Device::Cpu);
        let view = |m: &TwoTower| m.params.views(&m.params.flat)[2].copy();
        assert!(!view(&base).equal(&view(&shard)));
        assert!(!view(&base).equal(&view(&seed)));
        // Under init = "shared" every shard starts from shard 0's weights; seeds still differ.
        let shared = ModelConfig { init: crate::config::Init::Shared, ..small() };
        let shard = TwoTower::new(&shared, &users, &items, &[true, true], 0, 1, Device::Cpu);
        let seed = TwoTower::new(&shared, &users, &items, &[true, true], 1, 1, Device::Cpu);
        assert!(shard.params.flat.equal(&base.params.flat));
        assert!(!seed.params.flat.equal(&base.params.flat));
    }
}
