//! Typed, validated settings. A TOML file in `configs/` is read once, every missing key takes its
//! documented default (the same values `configs/default.toml` spells out), unknown keys are
//! rejected, and `Config::validate` checks every value before any data is read, naming the field.
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::EemuError;

/// All settings of one eemu run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Global seed: shard salts (when not set), training seeds and sampling derive from it.
    pub seed: u64,
    pub ingest: IngestConfig,
    pub split: SplitConfig,
    pub shards: ShardConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub adapt: AdaptConfig,
    pub cluster: ClusterConfig,
    pub infer: InferConfig,
}

/// Clustering of users for batch inference (paper Algorithm 3): k-means per shard on the users'
/// embeddings from the shard model, then k-means on the co-association of those labelings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// K: clusters of each shard's k-means and of the consensus.
    pub clusters: usize,
    /// k-means restarts (k-means++ init each); the run with the lowest inertia is kept.
    pub runs: usize,
    pub max_iterations: u64,
    /// Stop when the centroids move less than this.
    pub tolerance: f64,
    /// `auto`, `dense` or `factorized`.
    pub consensus: ConsensusChoice,
    /// With `auto`: the dense N x N co-association matrix up to this many users, factorized above.
    pub dense_max_users: usize,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            clusters: 25,
            runs: 10,
            max_iterations: 300,
            tolerance: 1e-4,
            consensus: ConsensusChoice::Auto,
            dense_max_users: 1000,
        }
    }
}

/// How the co-association ensemble is computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsensusChoice {
    /// Dense up to `dense_max_users` labelled users, factorized above.
    Auto,
    /// The paper's N x N matrix (O(N^2) memory).
    Dense,
    /// The exact factorization through H^T H (O(N * S * K) memory).
    Factorized,
}

/// Batch inference: one specialized model per (shard, cluster), top-K lists for every user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferConfig {
    /// Length of each user's list.
    pub top_k: usize,
    /// Steps of a fresh Adam (adapt.learning_rate) on a cluster's adaptation set, per shard.
    pub adapt_steps: usize,
    /// Users scored per matrix product.
    pub batch_users: usize,
    /// `nested` (one row per user) or `flat` (one row per user and rank).
    pub layout: LayoutChoice,
    /// Rows per Parquet row group of the output (users in the nested layout, entries in flat).
    pub row_group_rows: usize,
    /// Runs computed from data or models that are no longer current (a deletion, a retrained
    /// shard) kept after a new run is published, newest first. 0 deletes them all: kept runs may
    /// hold deleted rows, and `eemu verify` reports them.
    pub keep_superseded_runs: usize,
}

impl Default for InferConfig {
    fn default() -> Self {
        Self {
            top_k: 100,
            adapt_steps: 1,
            batch_users: 2048,
            layout: LayoutChoice::Nested,
            row_group_rows: 16384,
            keep_superseded_runs: 0,
        }
    }
}

/// Output layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutChoice {
    Nested,
    Flat,
}

/// Inference-time adaptation (paper Algorithm 2). Not part of any lineage hash: adapted models
/// are never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdaptConfig {
    /// Softmax temperature of the adaptation-set sampling, p_i ~ exp((1/d_i) / T).
    pub temperature: f64,
    /// Items drawn (with replacement) into a user's adaptation set.
    pub set_size: usize,
    /// Uniform negatives drawn into a user's adaptation set, paired in turn with its `set_size`
    /// items (item i with negative i mod `negatives`); at most `set_size`. 0 (the default): one
    /// per item, as Algorithm 2 and the reference code. Each negative may be an item the user
    /// will like: the more are drawn, the likelier the adaptation pushes such an item down. Left
    /// out of the serialized config when 0, so configs written before it existed keep their hash.
    #[serde(skip_serializing_if = "is_zero")]
    pub negatives: usize,
    /// Optimizer steps (fresh Adam) on the parameters of `scope`.
    pub steps: usize,
    /// Step size of the fresh Adam of every adaptation: per user (Algorithm 2) and per cluster
    /// (batch inference, Algorithm 3). Its own setting, so that tuning train.learning_rate does
    /// not also change the size of the adaptation step (a fresh Adam's first step moves every
    /// parameter with a non-zero gradient by this much).
    pub learning_rate: f64,
    /// Which parameters the adaptation moves. Left out of the serialized config when it is the
    /// default (`all`), so configs written before it existed keep their hash.
    #[serde(skip_serializing_if = "AdaptScope::is_all")]
    pub scope: AdaptScope,
}

impl Default for AdaptConfig {
    fn default() -> Self {
        Self { temperature: 0.01, set_size: 7, negatives: 0, steps: 1, learning_rate: 2e-4, scope: AdaptScope::All }
    }
}

impl AdaptConfig {
    /// The number of negatives drawn into an adaptation set: `negatives`, or `set_size` for 0.
    pub fn negatives_drawn(&self) -> usize {
        self.negatives_for(self.set_size)
    }

    /// The number of negatives drawn into a set of `set_size` items under this config:
    /// `negatives`, or one per item for 0.
    pub fn negatives_for(&self, set_size: usize) -> usize {
        if self.negatives == 0 {
            set_size
        } else {
            self.negatives
        }
    }
}

/// The parameters an adaptation (per user or per cluster) moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdaptScope {
    /// Every parameter of both towers, as Algorithm 2 and the reference code.
    #[default]
    All,
    /// The user side only (its tables and tower); item vectors stay those of the shard model.
    User,
    /// Each user's final vector only (the user tower's output, `model.embedding_dim` numbers
    /// a user), started from the shard model's; the towers and the item vectors stay as they are.
    Vector,
}

impl AdaptScope {
    pub fn is_all(&self) -> bool {
        *self == AdaptScope::All
    }

    /// The name used in configs and on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            AdaptScope::All => "all",
            AdaptScope::User => "user",
            AdaptScope::Vector => "vector",
        }
    }
}

impl std::str::FromStr for AdaptScope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "all" => Ok(AdaptScope::All),
            "user" => Ok(AdaptScope::User),
            "vector" => Ok(AdaptScope::Vector),
            _ => Err(format!("unknown adaptation scope {s:?}: expected \"all\", \"user\" or \"vector\"")),
        }
    }
}

/// How generic CSV / Parquet inputs are read. MovieLens formats read only the feature tables
/// (`--users`, `--items`: `delimiter`, separators, id columns, features) of this section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    pub user_column: String,
    pub item_column: String,
    /// Empty: the input has no timestamp (input order stands in for time).
    pub timestamp_column: String,
    /// Empty: every interaction has weight 1.
    pub weight_column: String,
    /// `auto`, `int` or `string`.
    pub id_type: IdType,
    /// CSV field separator, one character (`"\t"` for TSV).
    pub delimiter: String,
    /// Separator between the values of a multi-hot feature inside one CSV field.
    pub list_separator: String,
    /// Separator between the numbers of a dense feature inside one CSV field.
    pub dense_separator: String,
    /// Id column of the user feature table.
    pub user_id_column: String,
    /// Id column of the item feature table.
    pub item_id_column: String,
    pub user_features: Vec<FeatureDecl>,
    pub item_features: Vec<FeatureDecl>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            user_column: "user_id".into(),
            item_column: "item_id".into(),
            timestamp_column: "timestamp".into(),
            weight_column: String::new(),
            id_type: IdType::Auto,
            delimiter: ",".into(),
            list_separator: "|".into(),
            dense_separator: ";".into(),
            user_id_column: "user_id".into(),
            item_id_column: "item_id".into(),
            user_features: Vec::new(),
            item_features: Vec::new(),
        }
    }
}

/// Type of original user and item ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdType {
    /// Integers when every id of the column parses as one, strings otherwise.
    Auto,
    Int,
    String,
}

/// One declared feature column of a user or item table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureDecl {
    /// Feature name in the store (and the column name unless `column` is set).
    pub name: String,
    #[serde(default)]
    pub column: Option<String>,
    pub kind: FeatureKindDecl,
    /// Vector length, for `dense` features only.
    #[serde(default)]
    pub dim: Option<usize>,
}

impl FeatureDecl {
    /// The input column this feature is read from.
    pub fn column(&self) -> &str {
        self.column.as_deref().unwrap_or(&self.name)
    }
}

/// Declared feature kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeatureKindDecl {
    Categorical,
    MultiHot,
    Dense,
}

/// Evaluation split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SplitConfig {
    pub mode: SplitMode,
    /// In leave-one-out mode, users with fewer interactions keep them all for training.
    pub min_interactions: usize,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self { mode: SplitMode::LeaveOneOut, min_interactions: 3 }
    }
}

/// `leave-one-out`: per user, last = test, second-last = validation; `production`: all training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitMode {
    LeaveOneOut,
    Production,
}

/// Sharding of the training interactions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    pub count: usize,
    pub assignment: ShardAssignment,
    /// Key of the shard hash; empty derives it from `seed`.
    pub salt: String,
    /// Query rows per (user, shard) slice; the rest is the support set.
    pub query_size: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        Self { count: 8, assignment: ShardAssignment::Hash, salt: String::new(), query_size: 1 }
    }
}

/// How an interaction's shard is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShardAssignment {
    /// Keyed hash of the interaction alone: deleting rows never moves another row.
    Hash,
    /// Round-robin over each user's rows in keyed-hash order: even per-user spread, but deleting
    /// one of a user's rows can move that user's other rows (weaker for exact unlearning).
    Balanced,
}

/// Two-tower model shape (reference: alshabae/EEMU).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    pub feature_dim: usize,
    pub user_tower: Vec<usize>,
    pub item_tower: Vec<usize>,
    pub embedding_dim: usize,
    /// Initial weights of the shard models. Left out of the serialized config at its default,
    /// so lineage hashes of stores made before it existed do not change.
    #[serde(skip_serializing_if = "Init::is_per_shard")]
    pub init: Init,
}

/// How each shard model's initial weights are drawn (always from the config's seed alone,
/// never from data, so retraining a shard from scratch starts from the same weights).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// Keyed by (seed, shard index): every shard starts from its own weights.
    #[default]
    PerShard,
    /// Keyed by the seed alone: every shard starts from the same weights (shard 0's), as in
    /// the reference code, where every process seeds its RNG with 0.
    Shared,
}

impl Init {
    pub fn is_per_shard(&self) -> bool {
        *self == Init::PerShard
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            feature_dim: 96,
            user_tower: vec![512, 256, 128, 64],
            item_tower: vec![256, 128, 64],
            embedding_dim: 128,
            init: Init::PerShard,
        }
    }
}

/// Per-shard training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    pub algorithm: Algorithm,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub margin: f64,
    pub inner_steps: usize,
    /// SGD step size of the inner loop of `maml` and `reptile`.
    pub inner_learning_rate: f64,
    /// Inner loop of `maml` and `reptile`: each user on their own (the papers), or the whole
    /// meta-batch in one batched step. Left out of the serialized config at its default, so
    /// lineage hashes of stores made before it existed do not change.
    #[serde(skip_serializing_if = "InnerLoop::is_per_user")]
    pub inner_loop: InnerLoop,
    /// Epochs of plain (`standard`) training at `warmup_learning_rate` before `algorithm` takes
    /// over with a fresh Adam at `learning_rate`; counted within `epochs`. 0 (the default, the
    /// paper): none. Both are left out of the serialized config at their defaults, so lineage
    /// hashes of stores made before they existed do not change.
    #[serde(skip_serializing_if = "is_zero")]
    pub warmup_epochs: usize,
    #[serde(skip_serializing_if = "is_default_warmup_rate")]
    pub warmup_learning_rate: f64,
}

/// `train.warmup_learning_rate`'s default: the rate validation chose for the sharded Mean on
/// ml-100k (docs/results.md).
pub const DEFAULT_WARMUP_LEARNING_RATE: f64 = 2e-3;

/// Serde's `skip_serializing_if` for counts whose default is 0.
pub fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_default_warmup_rate(x: &f64) -> bool {
    *x == DEFAULT_WARMUP_LEARNING_RATE
}

impl TrainConfig {
    /// The algorithm of epoch `epoch` (1-based): `standard` during the warm-up, then `algorithm`.
    pub fn algorithm_at(&self, epoch: usize) -> Algorithm {
        if epoch <= self.warmup_epochs {
            Algorithm::Standard
        } else {
            self.algorithm
        }
    }

    /// Adam's step size in epoch `epoch` (1-based).
    pub fn learning_rate_at(&self, epoch: usize) -> f64 {
        if epoch <= self.warmup_epochs {
            self.warmup_learning_rate
        } else {
            self.learning_rate
        }
    }

    /// True when epoch `epoch` (1-based) starts the configured algorithm after a warm-up, with a
    /// fresh Adam.
    pub fn starts_after_warmup(&self, epoch: usize) -> bool {
        self.warmup_epochs > 0 && epoch == self.warmup_epochs + 1
    }
}

/// How `maml` and `reptile` take their inner steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerLoop {
    /// One inner loop per user, from the meta-batch's start weights.
    #[default]
    PerUser,
    /// One inner loop for the whole meta-batch on the mean of the users' losses (each user's
    /// loss is the mean over their pairs, as per user). For `reptile` with one inner step this
    /// is the same update as `per-user`; otherwise an approximation that shares the adapted
    /// weights across the meta-batch.
    Batched,
}

impl InnerLoop {
    pub fn is_per_user(&self) -> bool {
        *self == InnerLoop::PerUser
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Fomaml,
            epochs: 100,
            batch_size: 32,
            learning_rate: 2e-4,
            margin: 1.0,
            inner_steps: 1,
            inner_learning_rate: 0.01,
            inner_loop: InnerLoop::PerUser,
            warmup_epochs: 0,
            warmup_learning_rate: DEFAULT_WARMUP_LEARNING_RATE,
        }
    }
}

/// Training algorithm of each shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    Fomaml,
    Maml,
    Reptile,
    Standard,
}

impl Config {
    /// Reads and validates a TOML config file.
    pub fn load(path: &Path) -> Result<Config, EemuError> {
        let text = std::fs::read_to_string(path).map_err(|e| EemuError::Config {
            file: path.display().to_string(),
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates TOML text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, EemuError> {
        let config: Config = toml::from_str(text).map_err(|e| EemuError::Config {
            file: origin.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate().map_err(|message| EemuError::Config { file: origin.to_string(), message })?;
        Ok(config)
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        let i = &self.ingest;
        for (field, value) in [
            ("ingest.user_column", &i.user_column),
            ("ingest.item_column", &i.item_column),
            ("ingest.user_id_column", &i.user_id_column),
            ("ingest.item_id_column", &i.item_id_column),
        ] {
            if value.is_empty() {
                return Err(format!("{field} must not be empty"));
            }
        }
        if i.delimiter.chars().count() != 1 || !i.delimiter.is_ascii() {
            return Err(format!("ingest.delimiter must be one ASCII character, got {:?}", i.delimiter));
        }
        for (field, value) in
            [("ingest.list_separator", &i.list_separator), ("ingest.dense_separator", &i.dense_separator)]
        {
            if value.is_empty() {
                return Err(format!("{field} must not be empty"));
            }
            if *value == i.delimiter {
                return Err(format!("{field} must differ from ingest.delimiter ({:?})", i.delimiter));
            }
        }
        for (side, decls) in [("user_features", &i.user_features), ("item_features", &i.item_features)] {
            let mut names = std::collections::BTreeSet::new();
            for (n, decl) in decls.iter().enumerate() {
                let field = format!("ingest.{side}[{n}]");
                if decl.name.is_empty() {
                    return Err(format!("{field}.name must not be empty"));
                }
                if !names.insert(decl.name.as_str()) {
                    return Err(format!("{field}.name: feature {:?} is declared twice", decl.name));
                }
                match (decl.kind, decl.dim) {
                    (FeatureKindDecl::Dense, None) => {
                        return Err(format!("{field}.dim is required for a dense feature"))
                    }
                    (FeatureKindDecl::Dense, Some(0)) => return Err(format!("{field}.dim must be at least 1")),
                    (FeatureKindDecl::Dense, Some(_)) => {}
                    (_, Some(_)) => return Err(format!("{field}.dim is only allowed for dense features")),
                    (_, None) => {}
                }
            }
        }
        if self.split.min_interactions < 3 {
            return Err("split.min_interactions must be at least 3 (test + validation + one training row)".into());
        }
        let s = &self.shards;
        if s.count == 0 || s.count > 1024 {
            return Err(format!("shards.count must be between 1 and 1024, got {}", s.count));
        }
        if s.query_size == 0 {
            return Err("shards.query_size must be at least 1".into());
        }
        let m = &self.model;
        for (field, value) in [("model.feature_dim", m.feature_dim), ("model.embedding_dim", m.embedding_dim)] {
            if value == 0 {
                return Err(format!("{field} must be at least 1"));
            }
        }
        for (field, dims) in [("model.user_tower", &m.user_tower), ("model.item_tower", &m.item_tower)] {
            if let Some(n) = dims.iter().position(|&d| d == 0) {
                return Err(format!("{field}[{n}] must be at least 1"));
            }
        }
        let t = &self.train;
        if t.epochs == 0 {
            return Err("train.epochs must be at least 1".into());
        }
        if t.batch_size == 0 {
            return Err("train.batch_size must be at least 1".into());
        }
        if !(t.learning_rate.is_finite() && t.learning_rate > 0.0) {
            return Err(format!("train.learning_rate must be a positive number, got {}", t.learning_rate));
        }
        if !(t.margin.is_finite() && t.margin >= 0.0) {
            return Err(format!("train.margin must be a non-negative number, got {}", t.margin));
        }
        if t.inner_steps == 0 {
            return Err("train.inner_steps must be at least 1".into());
        }
        if !(t.inner_learning_rate.is_finite() && t.inner_learning_rate > 0.0) {
            return Err(format!("train.inner_learning_rate must be a positive number, got {}", t.inner_learning_rate));
        }
        if t.warmup_epochs >= t.epochs {
            return Err(format!(
                "train.warmup_epochs ({}) must be below train.epochs ({}): the warm-up is counted within the epochs, \
                 and train.algorithm would never train",
                t.warmup_epochs, t.epochs
            ));
        }
        if !(t.warmup_learning_rate.is_finite() && t.warmup_learning_rate > 0.0) {
            return Err(format!(
                "train.warmup_learning_rate must be a positive number, got {}",
                t.warmup_learning_rate
            ));
        }
        let a = &self.adapt;
        if !(a.temperature.is_finite() && a.temperature > 0.0) {
            return Err(format!("adapt.temperature must be a positive number, got {}", a.temperature));
        }
        if a.set_size == 0 {
            return Err("adapt.set_size must be at least 1".into());
        }
        if a.negatives > a.set_size {
            return Err(format!(
                "adapt.negatives ({}) must not exceed adapt.set_size ({}): each negative is paired with an item",
                a.negatives, a.set_size
            ));
        }
        if a.steps == 0 {
            return Err("adapt.steps must be at least 1".into());
        }
        if !(a.learning_rate.is_finite() && a.learning_rate > 0.0) {
            return Err(format!("adapt.learning_rate must be a positive number, got {}", a.learning_rate));
        }
        let c = &self.cluster;
        if c.clusters == 0 {
            return Err("cluster.clusters must be at least 1".into());
        }
        if c.runs == 0 {
            return Err("cluster.runs must be at least 1".into());
        }
        if c.max_iterations == 0 {
            return Err("cluster.max_iterations must be at least 1".into());
        }
        if !(c.tolerance.is_finite() && c.tolerance > 0.0) {
            return Err(format!("cluster.tolerance must be a positive number, got {}", c.tolerance));
        }
        let f = &self.infer;
        for (field, value) in [
            ("infer.top_k", f.top_k),
            ("infer.adapt_steps", f.adapt_steps),
            ("infer.batch_users", f.batch_users),
            ("infer.row_group_rows", f.row_group_rows),
        ] {
            if value == 0 {
                return Err(format!("{field} must be at least 1"));
            }
        }
        Ok(())
    }

    /// The settings a shard's training depends on, as canonical JSON: part of its lineage hash.
    pub fn training_identity(&self) -> String {
        let identity = serde_json::json!({
            "seed": self.seed,
            "shards": self.shards,
            "model": self.model,
            "train": self.train,
        });
        identity.to_string()
    }

    /// The shard-hash key: `shards.salt`, or one derived from `seed` when empty.
    pub fn shard_salt(&self) -> Vec<u8> {
        if self.shards.salt.is_empty() {
            let mut h = Sha256::new();
            h.update(b"eemu-shard-salt-v1");
            h.update(self.seed.to_le_bytes());
            h.finalize().to_vec()
        } else {
            self.shards.salt.as_bytes().to_vec()
        }
    }

    /// SHA-256 (hex) of [`Config::training_identity`]: what trained models depend on.
    pub fn training_hash(&self) -> String {
        hex(&Sha256::digest(self.training_identity().as_bytes()))
    }

    /// SHA-256 of the whole resolved config (hex), recorded in manifests.
    pub fn hash(&self) -> String {
        let text = serde_json::to_string(self).expect("config serializes");
        hex(&Sha256::digest(text.as_bytes()))
    }
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_name_reads_back_in_a_config_and_on_the_command_line() {
        #[derive(Serialize, Deserialize)]
        struct Section {
            scope: AdaptScope,
        }
        for scope in [AdaptScope::All, AdaptScope::User] {
            assert_eq!(scope.name().parse::<AdaptScope>(), Ok(scope));
            let text = toml::to_string(&Section { scope }).expect("serializes");
            assert_eq!(text.trim(), format!("scope = \"{}\"", scope.name()));
            assert_eq!(toml::from_str::<Section>(&text).expect("parses").scope, scope);
        }
        assert!("User".parse::<AdaptScope>().is_err());
    }

    #[test]
    fn a_warm_up_is_checked_and_left_out_of_the_lineage_at_its_default() {
        let plain = Config::default();
        let text = plain.training_identity();
        assert!(!text.contains("warmup"), "{text}");
        let warm = Config::parse("[train]\nepochs = 30\nwarmup_epochs = 20\nwarmup_learning_rate = 1e-3\n", "t.toml")
            .expect("valid");
        assert_eq!((warm.train.warmup_epochs, warm.train.warmup_learning_rate), (20, 1e-3));
        assert!(warm.training_identity().contains("\"warmup_epochs\":20"));
        assert_ne!(warm.training_hash(), plain.training_hash());
        // The phases: plain training at the warm-up rate through epoch 20, then the algorithm.
        let t = &warm.train;
        assert_eq!((t.algorithm_at(20), t.learning_rate_at(20)), (Algorithm::Standard, 1e-3));
        assert_eq!((t.algorithm_at(21), t.learning_rate_at(21)), (Algorithm::Fomaml, 2e-4));
        assert!(t.starts_after_warmup(21) && !t.starts_after_warmup(20) && !t.starts_after_warmup(22));
        assert!(!plain.train.starts_after_warmup(1) && plain.train.algorithm_at(1) == Algorithm::Fomaml);
        for (body, want) in [
            ("epochs = 20\nwarmup_epochs = 20", "train.warmup_epochs (20) must be below train.epochs (20)"),
            ("warmup_epochs = 5\nwarmup_learning_rate = 0", "train.warmup_learning_rate must be a positive number"),
        ] {
            let e = Config::parse(&format!("[train]\n{body}\n"), "t.toml").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("t.toml"), "{e}");
        }
    }

    #[test]
    fn adaptation_negatives_default_to_one_per_item_and_keep_the_config_hash() {
        let plain = Config::default();
        assert_eq!((plain.adapt.negatives, plain.adapt.negatives_drawn()), (0, 7));
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("negatives"), "{text}");
        let few = Config::parse("[adapt]\nset_size = 63\nnegatives = 7\n", "t.toml").expect("valid");
        assert_eq!(few.adapt.negatives_drawn(), 7);
        let e = Config::parse("[adapt]\nset_size = 7\nnegatives = 8\n", "t.toml").unwrap_err().to_string();
        assert!(e.contains("adapt.negatives (8) must not exceed adapt.set_size (7)") && e.contains("t.toml"), "{e}");
    }
}
