//! The store: a folder holding the ingested dataset, per-shard lineage folders and (in later
//! stages) models, clusterings and runs. Layout:
//!
//! ```text
//! STORE/
//!   manifest.json                         current dataset, config, shard table; written last
//!   datasets/<dataset-id>/
//!     interactions.parquet                canonical order; split, shard and query per row
//!     users.parquet, items.parquet        internal id, original id, features (labels)
//!   shards/<index>/<lineage-hash>/
//!     lineage.json                        what the hash covers; models of this lineage live here
//! ```
//!
//! Every file is written atomically, and `manifest.json` is replaced only after everything it
//! points to is complete, so a failed ingest leaves the store as it was. Datasets and shard
//! folders the new manifest no longer references are deleted afterwards (they may hold rows that
//! were removed).
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, FixedSizeListArray, Float32Array, Int64Array, ListArray, RecordBatch,
    StringArray, UInt16Array, UInt32Array, UInt8Array,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Float32Type, Int64Type, Schema, UInt16Type, UInt32Type, UInt8Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::{hex, Config};
use crate::data::shard::{self, ShardPlan};
use crate::data::split::{self, Split};
use crate::data::{Dataset, Entities, Feature, FeatureSchema, FeatureValues, Ids, Interactions};

pub mod files;
pub mod lineage;

use files::{sync_dir, write_atomic, write_parquet_atomic};

/// Version of the store layout; bumped on incompatible changes.
pub const STORE_FORMAT: u32 = 1;
/// File name of a shard model inside its lineage folder (written by training).
pub const MODEL_FILE: &str = "model.safetensors";

/// An input file the dataset was read from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// What the store's dataset holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub id: String,
    pub format: String,
    pub sources: Vec<Source>,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub users_with_interactions: usize,
    pub users_evaluated: usize,
    pub has_timestamp: bool,
    pub has_weight: bool,
    pub user_id_type: String,
    pub item_id_type: String,
    pub user_features: Vec<FeatureSchema>,
    pub item_features: Vec<FeatureSchema>,
    pub item_catalog_hash: String,
}

/// One shard of the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub index: usize,
    pub rows: usize,
    pub users: usize,
    pub query_rows: usize,
    pub lineage: String,
}

/// How users spread over shards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    /// Entry `k`: users whose training rows fall into exactly `k` shards.
    pub users_by_shard_count: Vec<usize>,
    /// (user, shard) slices with rows but no query row (too few rows to hold one out).
    pub slices_without_query: usize,
}

/// `manifest.json`: the store's table of contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub store_format: u32,
    pub eemu_version: String,
    pub config_hash: String,
    pub config: Config,
    pub dataset: DatasetInfo,
    pub shards: Vec<ShardInfo>,
    pub coverage: Coverage,
    /// Highest deletion-ledger entry (`ledger.json`) applied to this dataset; 0 when none.
    /// Written with the dataset it describes, so applying a batch commits atomically.
    #[serde(default)]
    pub ledger_applied: u64,
}

/// A store folder.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.root.join("manifest.json")
    }

    pub fn dataset_dir(&self, id: &str) -> PathBuf {
        self.root.join("datasets").join(id)
    }

    /// Folder of one shard lineage: models trained on exactly these rows go here.
    pub fn shard_dir(&self, index: usize, lineage: &str) -> PathBuf {
        self.root.join("shards").join(index.to_string()).join(lineage)
    }

    /// True when a finished model exists for this shard lineage.
    pub fn is_trained(&self, shard: &ShardInfo) -> bool {
        self.shard_dir(shard.index, &shard.lineage).join(MODEL_FILE).is_file()
    }

    /// Reads the manifest; a missing one means the folder is not a store yet.
    pub fn manifest(&self) -> Result<Manifest> {
        let path = self.manifest_path();
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "{} is not an eemu store (no manifest.json); run `eemu ingest --store {}` first",
                    self.root.display(),
                    self.root.display()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let manifest: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{} is not a valid manifest", path.display()))?;
        if manifest.store_format != STORE_FORMAT {
            bail!(
                "{}: store format {} is not supported (this eemu reads format {STORE_FORMAT})",
                path.display(),
                manifest.store_format
            );
        }
        Ok(manifest)
    }

    /// Writes a prepared dataset into the store and publishes it; returns the new manifest.
    /// The deletion ledger's applied mark carries over from the store's current manifest.
    pub fn publish(&self, prepared: &Prepared, sources: Vec<Source>) -> Result<Manifest> {
        let ledger_applied = self.manifest().map_or(0, |m| m.ledger_applied);
        self.publish_as(prepared, sources, ledger_applied)
    }

    /// `publish`, recording that ledger entries up to `ledger_applied` are applied.
    pub fn publish_as(&self, prepared: &Prepared, sources: Vec<Source>, ledger_applied: u64) -> Result<Manifest> {
        fs::create_dir_all(self.root.join("datasets"))
            .with_context(|| format!("cannot create store {}", self.root.display()))?;
        let id = &prepared.id;
        let final_dir = self.dataset_dir(id);
        if !final_dir.join("interactions.parquet").is_file() {
            let staging = self.root.join("datasets").join(format!(".staging-{id}-{}", std::process::id()));
            let written = write_dataset_files(&staging, prepared).and_then(|()| {
                if final_dir.exists() {
                    fs::remove_dir_all(&final_dir)
                        .with_context(|| format!("cannot replace {}", final_dir.display()))?;
                }
                fs::rename(&staging, &final_dir).with_context(|| format!("cannot publish {}", final_dir.display()))?;
                sync_dir(&self.root.join("datasets"))
            });
            if let Err(e) = written {
                let _ = fs::remove_dir_all(&staging);
                return Err(e);
            }
        }
        for s in &prepared.lineages {
            let dir = self.shard_dir(s.index, &s.lineage);
            fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            let record = serde_json::json!({
                "shard": s.index,
                "lineage": s.lineage,
                "rows": s.rows,
                "users": s.users,
                "covers": "training identity (seed, shards, model, train settings), shard index, item catalog, the shard's rows, its users' features and validation items",
                "training_identity": serde_json::from_str::<serde_json::Value>(&prepared.config.training_identity())?,
            });
            // An unchanged lineage keeps its folder untouched (a deletion elsewhere rewrites nothing here).
            let bytes = serde_json::to_string_pretty(&record)?;
            let path = dir.join("lineage.json");
            if fs::read(&path).ok().as_deref() != Some(bytes.as_bytes()) {
                write_atomic(&path, bytes.as_bytes())?;
            }
        }
        let mut manifest = prepared.manifest(sources);
        manifest.ledger_applied = ledger_applied;
        write_atomic(&self.manifest_path(), (serde_json::to_string_pretty(&manifest)? + "\n").as_bytes())?;
        self.remove_unreferenced(&manifest)?;
        Ok(manifest)
    }

    /// Deletes datasets and shard lineage folders the manifest does not reference, and the
    /// half-written files that killed processes left in the store's folder and its kept lineages.
    fn remove_unreferenced(&self, manifest: &Manifest) -> Result<()> {
        files::remove_stale_temp_files(&self.root)?;
        let keep_dataset = self.dataset_dir(&manifest.dataset.id);
        for entry in list_dir(&self.root.join("datasets"))? {
            if entry != keep_dataset {
                remove(&entry)?;
            }
        }
        let keep: BTreeSet<PathBuf> = manifest.shards.iter().map(|s| self.shard_dir(s.index, &s.lineage)).collect();
        for shard in list_dir(&self.root.join("shards"))? {
            for lineage in list_dir(&shard)? {
                if !keep.contains(&lineage) {
                    remove(&lineage)?;
                } else {
                    files::remove_stale_temp_files(&lineage)?;
                }
            }
            if list_dir(&shard)?.is_empty() {
                remove(&shard)?;
            }
        }
        Ok(())
    }

    /// Reads the store's dataset back (interactions in canonical order) with split and shard plan.
    pub fn load(&self) -> Result<(Manifest, Prepared)> {
        let manifest = self.manifest()?;
        let dir = self.dataset_dir(&manifest.dataset.id);
        let users = read_entities(&dir.join("users.parquet"), "user", &manifest.dataset.user_features)?;
        let items = read_entities(&dir.join("items.parquet"), "item", &manifest.dataset.item_features)?;
        let batch = read_parquet(&dir.join("interactions.parquet"))?;
        let col = |name: &str| -> Result<&ArrayRef> {
            batch
                .column_by_name(name)
                .with_context(|| format!("{}: column '{name}' is missing", dir.join("interactions.parquet").display()))
        };
        let interactions = Interactions {
            user: col("user")?.as_primitive::<UInt32Type>().values().to_vec(),
            item: col("item")?.as_primitive::<UInt32Type>().values().to_vec(),
            timestamp: manifest
                .dataset
                .has_timestamp
                .then(|| col("timestamp").map(|c| c.as_primitive::<Int64Type>().values().to_vec()))
                .transpose()?,
            weight: manifest
                .dataset
                .has_weight
                .then(|| col("weight").map(|c| c.as_primitive::<Float32Type>().values().to_vec()))
                .transpose()?,
        };
        let split: Vec<Split> = col("split")?
            .as_primitive::<UInt8Type>()
            .values()
            .iter()
            .map(|&c| Split::from_code(c).context("invalid split code in the store"))
            .collect::<Result<_>>()?;
        let shards = col("shard")?.as_primitive::<UInt16Type>();
        let plan = ShardPlan {
            shard: (0..shards.len()).map(|i| (!shards.is_null(i)).then(|| shards.value(i))).collect(),
            query: col("query")?.as_boolean().iter().map(|q| q.unwrap_or(false)).collect(),
        };
        let dataset = Dataset { format: manifest.dataset.format.clone(), users, items, interactions };
        let lineages = manifest
            .shards
            .iter()
            .map(|s| lineage::ShardLineage {
                index: s.index,
                rows: s.rows,
                users: s.users,
                query_rows: s.query_rows,
                lineage: s.lineage.clone(),
            })
            .collect();
        let prepared = Prepared {
            id: manifest.dataset.id.clone(),
            config: manifest.config.clone(),
            dataset,
            split,
            plan,
            lineages,
        };
        Ok((manifest, prepared))
    }
}

/// The entries of a folder, sorted; none when it does not exist.
pub(crate) fn list_dir(dir: &Path) -> Result<Vec<PathBuf>> {
    match fs::read_dir(dir) {
        Ok(entries) => {
            let mut out = Vec::new();
            for e in entries {
                out.push(e.with_context(|| format!("cannot list {}", dir.display()))?.path());
            }
            out.sort();
            Ok(out)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e).with_context(|| format!("cannot list {}", dir.display())),
    }
}

fn remove(path: &Path) -> Result<()> {
    let result = if path.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) };
    result.with_context(|| format!("cannot remove {}", path.display()))
}

/// A dataset in canonical order with its split, shard plan and lineages, ready to store.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub id: String,
    pub config: Config,
    pub dataset: Dataset,
    pub split: Vec<Split>,
    pub plan: ShardPlan,
    pub lineages: Vec<lineage::ShardLineage>,
}

impl Prepared {
    /// Orders the rows canonically, splits them, assigns shards and computes lineage hashes.
    pub fn new(mut dataset: Dataset, config: &Config) -> Prepared {
        let order = split::canonical_order(&dataset.interactions);
        dataset.interactions = dataset.interactions.select(&order);
        let split = split::assign(&dataset.interactions, &dataset.users.ids, &config.split, config.seed);
        Self::with_split(dataset, split, config)
    }

    /// Like `new`, with the split given per row (a split supplied by the user).
    pub fn from_split(mut dataset: Dataset, split: Vec<Split>, config: &Config) -> Prepared {
        let order = split::canonical_order(&dataset.interactions);
        dataset.interactions = dataset.interactions.select(&order);
        let split = order.iter().map(|&r| split[r]).collect();
        Self::with_split(dataset, split, config)
    }

    fn with_split(dataset: Dataset, split: Vec<Split>, config: &Config) -> Prepared {
        let plan = shard::assign(&dataset, &split, &config.shards, &config.shard_salt());
        let lineages = lineage::shard_lineages(&dataset, &split, &plan, config);
        let id = dataset_id(&dataset, &split, &plan, &lineages);
        Prepared { id, config: config.clone(), dataset, split, plan, lineages }
    }

    fn manifest(&self, sources: Vec<Source>) -> Manifest {
        let d = &self.dataset;
        let count = |s: Split| self.split.iter().filter(|&&x| x == s).count();
        let mut users_with = vec![false; d.users.len()];
        let mut evaluated = vec![false; d.users.len()];
        let mut shard_sets = vec![0u64; 0];
        let words = self.config.shards.count.div_ceil(64);
        shard_sets.resize(d.users.len() * words, 0);
        let mut slices = BTreeSet::new();
        for r in 0..d.interactions.len() {
            let u = d.interactions.user[r] as usize;
            users_with[u] = true;
            evaluated[u] |= self.split[r] == Split::Test;
            if let Some(s) = self.plan.shard[r] {
                shard_sets[u * words + s as usize / 64] |= 1 << (s % 64);
                slices.insert((u, s, self.plan.query[r]));
            }
        }
        let mut users_by_shard_count = vec![0; self.config.shards.count + 1];
        for u in 0..d.users.len() {
            let n: u32 = shard_sets[u * words..(u + 1) * words].iter().map(|w| w.count_ones()).sum();
            users_by_shard_count[n as usize] += 1;
        }
        let with_query: BTreeSet<(usize, u16)> = slices.iter().filter(|s| s.2).map(|s| (s.0, s.1)).collect();
        let all_slices: BTreeSet<(usize, u16)> = slices.iter().map(|s| (s.0, s.1)).collect();
        Manifest {
            store_format: STORE_FORMAT,
            eemu_version: env!("CARGO_PKG_VERSION").to_string(),
            config_hash: self.config.hash(),
            config: self.config.clone(),
            dataset: DatasetInfo {
                id: self.id.clone(),
                format: d.format.clone(),
                sources,
                users: d.users.len(),
                items: d.items.len(),
                interactions: d.interactions.len(),
                train: count(Split::Train),
                valid: count(Split::Valid),
                test: count(Split::Test),
                users_with_interactions: users_with.iter().filter(|&&b| b).count(),
                users_evaluated: evaluated.iter().filter(|&&b| b).count(),
                has_timestamp: d.interactions.timestamp.is_some(),
                has_weight: d.interactions.weight.is_some(),
                user_id_type: d.users.ids.type_name().into(),
                item_id_type: d.items.ids.type_name().into(),
                user_features: d.users.schema(),
                item_features: d.items.schema(),
                item_catalog_hash: hex(&d.item_catalog_hash()),
            },
            shards: self
                .lineages
                .iter()
                .map(|s| ShardInfo {
                    index: s.index,
                    rows: s.rows,
                    users: s.users,
                    query_rows: s.query_rows,
                    lineage: s.lineage.clone(),
                })
                .collect(),
            ledger_applied: 0,
            coverage: Coverage { users_by_shard_count, slices_without_query: all_slices.len() - with_query.len() },
        }
    }
}

/// Content id of a stored dataset: every row with its split and shard, and every entity.
pub(crate) fn dataset_id(d: &Dataset, split: &[Split], plan: &ShardPlan, lineages: &[lineage::ShardLineage]) -> String {
    let mut h = Sha256::new();
    h.update(b"eemu-dataset-v1");
    h.update(d.format.as_bytes());
    h.update((d.interactions.len() as u64).to_le_bytes());
    for (r, s) in split.iter().enumerate().take(d.interactions.len()) {
        d.hash_row_into(r, &mut h);
        h.update([*s as u8, plan.query[r] as u8]);
        h.update(plan.shard[r].map_or(u32::MAX, u32::from).to_le_bytes());
    }
    for entities in [&d.users, &d.items] {
        h.update((entities.len() as u64).to_le_bytes());
        for e in 0..entities.len() as u32 {
            entities.hash_entity_into(e, &mut h);
        }
    }
    for l in lineages {
        h.update(l.lineage.as_bytes());
    }
    hex(&h.finalize())[..32].to_string()
}

fn write_dataset_files(dir: &Path, p: &Prepared) -> Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let x = &p.dataset.interactions;
    let mut columns: Vec<(&str, ArrayRef, bool)> = vec![
        ("user", Arc::new(UInt32Array::from(x.user.clone())), false),
        ("item", Arc::new(UInt32Array::from(x.item.clone())), false),
    ];
    if let Some(t) = &x.timestamp {
        columns.push(("timestamp", Arc::new(Int64Array::from(t.clone())), false));
    }
    if let Some(w) = &x.weight {
        columns.push(("weight", Arc::new(Float32Array::from(w.clone())), false));
    }
    columns.push(("split", Arc::new(UInt8Array::from_iter_values(p.split.iter().map(|&s| s as u8))), false));
    columns.push(("shard", Arc::new(UInt16Array::from(p.plan.shard.clone())), true));
    columns.push(("query", Arc::new(BooleanArray::from(p.plan.query.clone())), false));
    write_parquet_atomic(&dir.join("interactions.parquet"), &batch(columns)?)?;
    write_parquet_atomic(&dir.join("users.parquet"), &entities_batch(&p.dataset.users, "user")?)?;
    write_parquet_atomic(&dir.join("items.parquet"), &entities_batch(&p.dataset.items, "item")?)?;
    sync_dir(dir)
}

fn batch(columns: Vec<(&str, ArrayRef, bool)>) -> Result<RecordBatch> {
    let fields: Vec<Field> =
        columns.iter().map(|(n, a, nullable)| Field::new(*n, a.data_type().clone(), *nullable)).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|c| c.1).collect())?)
}

/// `<side>` (internal id), `<side>_id` (original id), then one column per feature as labels.
fn entities_batch(e: &Entities, side: &str) -> Result<RecordBatch> {
    let id_name = format!("{side}_id");
    let ids: ArrayRef = match &e.ids {
        Ids::Int(v) => Arc::new(Int64Array::from(v.clone())),
        Ids::Str(v) => Arc::new(StringArray::from_iter_values(v.iter())),
    };
    let mut columns: Vec<(&str, ArrayRef, bool)> =
        vec![(side, Arc::new(UInt32Array::from_iter_values(0..e.len() as u32)), false), (id_name.as_str(), ids, false)];
    for f in &e.features {
        let array: ArrayRef = match &f.values {
            FeatureValues::Categorical { vocabulary, codes } => {
                Arc::new(StringArray::from_iter_values(codes.iter().map(|&c| vocabulary[c as usize].as_str())))
            }
            FeatureValues::MultiHot { vocabulary, offsets, codes } => {
                let values = StringArray::from_iter_values(codes.iter().map(|&c| vocabulary[c as usize].as_str()));
                let offsets = OffsetBuffer::new(offsets.iter().map(|&o| o as i32).collect::<Vec<_>>().into());
                Arc::new(ListArray::try_new(
                    Arc::new(Field::new("item", DataType::Utf8, false)),
                    offsets,
                    Arc::new(values),
                    None,
                )?)
            }
            FeatureValues::Dense { dim, values } => Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new("item", DataType::Float32, false)),
                *dim as i32,
                Arc::new(Float32Array::from(values.clone())),
                None,
            )?),
        };
        columns.push((f.name.as_str(), array, false));
    }
    batch(columns)
}

fn read_parquet(path: &Path) -> Result<RecordBatch> {
    let file = fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .with_context(|| format!("cannot read {}", path.display()))?;
    let schema = arrow::array::RecordBatchReader::schema(&reader);
    let batches: Vec<RecordBatch> =
        reader.collect::<Result<_, _>>().with_context(|| format!("cannot decode {}", path.display()))?;
    Ok(arrow::compute::concat_batches(&schema, &batches)?)
}

fn read_entities(path: &Path, side: &str, schema: &[FeatureSchema]) -> Result<Entities> {
    let batch = read_parquet(path)?;
    let col = |name: &str| -> Result<&ArrayRef> {
        batch.column_by_name(name).with_context(|| format!("{}: column '{name}' is missing", path.display()))
    };
    let ids_col = col(&format!("{side}_id"))?;
    let ids = match ids_col.data_type() {
        DataType::Int64 => Ids::Int(ids_col.as_primitive::<Int64Type>().values().to_vec()),
        _ => {
            let s = ids_col.as_string::<i32>();
            Ids::Str((0..s.len()).map(|i| s.value(i).to_string()).collect())
        }
    };
    let mut features = Vec::with_capacity(schema.len());
    for f in schema {
        let a = col(f.name())?;
        let feature = match f {
            FeatureSchema::Categorical { name, .. } => {
                let s = a.as_string::<i32>();
                Feature::categorical(name, &(0..s.len()).map(|i| s.value(i).to_string()).collect::<Vec<_>>())
            }
            FeatureSchema::MultiHot { name, .. } => {
                let l = a.as_list::<i32>();
                let sets: Vec<Vec<String>> = (0..l.len())
                    .map(|i| {
                        let v = l.value(i);
                        let s = v.as_string::<i32>();
                        (0..s.len()).map(|j| s.value(j).to_string()).collect()
                    })
                    .collect();
                Feature::multi_hot(name, &sets)
            }
            FeatureSchema::Dense { name, dim } => {
                let l = a.as_fixed_size_list();
                let values = l.values().as_primitive::<Float32Type>().values().to_vec();
                Feature { name: name.clone(), values: FeatureValues::Dense { dim: *dim, values } }
            }
        };
        features.push(feature);
    }
    Ok(Entities { ids, features })
}
