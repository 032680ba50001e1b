//! The in-memory dataset: users and items with their original ids and features, and the
//! interactions between them in input order. Parsers (`movielens`, `table`) produce it, `synth`
//! generates it, `split` and `shard` derive per-row assignments from it, and the store persists it.
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod generic;
pub mod movielens;
pub mod shard;
pub mod split;
pub mod split_files;
pub mod synth;
pub mod table;

/// Original ids of users or items; the position of an id is its dense internal id. Ids are kept
/// sorted (numerically or bytewise), so removing some never reorders the others.
#[derive(Debug, Clone, PartialEq)]
pub enum Ids {
    Int(Vec<i64>),
    Str(Vec<String>),
}

impl Ids {
    /// Sorted unique ids from raw ones.
    pub fn from_int(mut ids: Vec<i64>) -> Ids {
        ids.sort_unstable();
        ids.dedup();
        Ids::Int(ids)
    }

    /// Sorted unique ids from raw ones.
    pub fn from_strings(mut ids: Vec<String>) -> Ids {
        ids.sort_unstable();
        ids.dedup();
        Ids::Str(ids)
    }

    pub fn len(&self) -> usize {
        match self {
            Ids::Int(v) => v.len(),
            Ids::Str(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `int` or `string`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Ids::Int(_) => "int",
            Ids::Str(_) => "string",
        }
    }

    /// The original id at `index`, for messages and outputs.
    pub fn display(&self, index: u32) -> String {
        match self {
            Ids::Int(v) => v[index as usize].to_string(),
            Ids::Str(v) => v[index as usize].clone(),
        }
    }

    /// Feeds the canonical bytes of the id at `index` into a hasher (type-tagged, length-prefixed).
    pub fn hash_into(&self, index: u32, h: &mut Sha256) {
        match self {
            Ids::Int(v) => {
                h.update([b'i']);
                h.update(v[index as usize].to_le_bytes());
            }
            Ids::Str(v) => {
                let s = v[index as usize].as_bytes();
                h.update([b's']);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s);
            }
        }
    }

    /// The ids of the entities marked in `keep` (still sorted, so no relative order changes).
    pub fn retain(&self, keep: &[bool]) -> Ids {
        fn pick<T: Clone>(v: &[T], keep: &[bool]) -> Vec<T> {
            v.iter().zip(keep).filter(|(_, &k)| k).map(|(x, _)| x.clone()).collect()
        }
        match self {
            Ids::Int(v) => Ids::Int(pick(v, keep)),
            Ids::Str(v) => Ids::Str(pick(v, keep)),
        }
    }

    /// Internal id of an original integer id.
    pub fn find_int(&self, id: i64) -> Option<u32> {
        match self {
            Ids::Int(v) => v.binary_search(&id).ok().map(|i| i as u32),
            Ids::Str(_) => None,
        }
    }

    /// Internal id of an original string id.
    pub fn find_str(&self, id: &str) -> Option<u32> {
        match self {
            Ids::Str(v) => v.binary_search_by(|x| x.as_str().cmp(id)).ok().map(|i| i as u32),
            Ids::Int(_) => None,
        }
    }
}

/// Kind and size of a stored feature, as recorded in the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum FeatureSchema {
    Categorical { name: String, cardinality: usize },
    MultiHot { name: String, cardinality: usize },
    Dense { name: String, dim: usize },
}

impl FeatureSchema {
    pub fn name(&self) -> &str {
        match self {
            FeatureSchema::Categorical { name, .. }
            | FeatureSchema::MultiHot { name, .. }
            | FeatureSchema::Dense { name, .. } => name,
        }
    }
}

/// Values of one feature for every entity (indexed by internal id).
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValues {
    /// One label per entity; `codes` index the sorted `vocabulary`.
    Categorical { vocabulary: Vec<String>, codes: Vec<u32> },
    /// A set of labels per entity, in CSR form: entity `e` has `codes[offsets[e]..offsets[e + 1]]`.
    MultiHot { vocabulary: Vec<String>, offsets: Vec<u32>, codes: Vec<u32> },
    /// A fixed-length vector per entity, row-major.
    Dense { dim: usize, values: Vec<f32> },
}

/// A named feature column.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub values: FeatureValues,
}

impl Feature {
    /// A categorical feature from one label per entity.
    pub fn categorical(name: &str, labels: &[String]) -> Feature {
        let vocabulary = vocabulary(labels.iter().map(String::as_str));
        let index = index_of(&vocabulary);
        let codes = labels.iter().map(|l| index[l.as_str()]).collect();
        Feature { name: name.to_string(), values: FeatureValues::Categorical { vocabulary, codes } }
    }

    /// A multi-hot feature from a label set per entity (duplicates within a set are dropped).
    pub fn multi_hot(name: &str, sets: &[Vec<String>]) -> Feature {
        let vocabulary = vocabulary(sets.iter().flatten().map(String::as_str));
        let index = index_of(&vocabulary);
        let mut offsets = Vec::with_capacity(sets.len() + 1);
        let mut codes = Vec::new();
        offsets.push(0u32);
        for set in sets {
            let mut set_codes: Vec<u32> = set.iter().map(|l| index[l.as_str()]).collect();
            set_codes.sort_unstable();
            set_codes.dedup();
            codes.extend(set_codes);
            offsets.push(codes.len() as u32);
        }
        Feature { name: name.to_string(), values: FeatureValues::MultiHot { vocabulary, offsets, codes } }
    }

    /// The schema entry of this feature.
    pub fn schema(&self) -> FeatureSchema {
        let name = self.name.clone();
        match &self.values {
            FeatureValues::Categorical { vocabulary, .. } => {
                FeatureSchema::Categorical { name, cardinality: vocabulary.len() }
            }
            FeatureValues::MultiHot { vocabulary, .. } => {
                FeatureSchema::MultiHot { name, cardinality: vocabulary.len() }
            }
            FeatureValues::Dense { dim, .. } => FeatureSchema::Dense { name, dim: *dim },
        }
    }

    /// Feeds the canonical value of entity `e` (labels, not codes) into a hasher.
    pub fn hash_value_into(&self, e: usize, h: &mut Sha256) {
        h.update((self.name.len() as u64).to_le_bytes());
        h.update(self.name.as_bytes());
        match &self.values {
            FeatureValues::Categorical { vocabulary, codes } => hash_label(&vocabulary[codes[e] as usize], h),
            FeatureValues::MultiHot { vocabulary, offsets, codes } => {
                let set = &codes[offsets[e] as usize..offsets[e + 1] as usize];
                h.update((set.len() as u64).to_le_bytes());
                for &c in set {
                    hash_label(&vocabulary[c as usize], h);
                }
            }
            FeatureValues::Dense { dim, values } => {
                for v in &values[e * dim..(e + 1) * dim] {
                    h.update(v.to_bits().to_le_bytes());
                }
            }
        }
    }
}

fn hash_label(label: &str, h: &mut Sha256) {
    h.update((label.len() as u64).to_le_bytes());
    h.update(label.as_bytes());
}

/// Sorted unique labels: numerically when every label is an integer, bytewise otherwise.
fn vocabulary<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let unique: BTreeSet<&str> = labels.collect();
    let mut vocabulary: Vec<String> = unique.into_iter().map(str::to_string).collect();
    if vocabulary.iter().all(|l| l.parse::<i64>().is_ok()) {
        vocabulary.sort_by_key(|l| l.parse::<i64>().unwrap_or_default());
    }
    vocabulary
}

fn index_of(vocabulary: &[String]) -> std::collections::HashMap<&str, u32> {
    vocabulary.iter().enumerate().map(|(i, l)| (l.as_str(), i as u32)).collect()
}

/// Users or items: ids plus feature columns of the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Entities {
    pub ids: Ids,
    pub features: Vec<Feature>,
}

impl Entities {
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The entities marked in `keep`. Features are rebuilt from the kept entities' labels, so
    /// vocabularies are exactly those an ingest of only these entities would build.
    pub fn retain(&self, keep: &[bool]) -> Entities {
        let kept: Vec<usize> = (0..self.len()).filter(|&e| keep[e]).collect();
        let features = self
            .features
            .iter()
            .map(|f| match &f.values {
                FeatureValues::Categorical { vocabulary, codes } => {
                    let labels: Vec<String> = kept.iter().map(|&e| vocabulary[codes[e] as usize].clone()).collect();
                    Feature::categorical(&f.name, &labels)
                }
                FeatureValues::MultiHot { vocabulary, offsets, codes } => {
                    let sets: Vec<Vec<String>> = kept
                        .iter()
                        .map(|&e| {
                            codes[offsets[e] as usize..offsets[e + 1] as usize]
                                .iter()
                                .map(|&c| vocabulary[c as usize].clone())
                                .collect()
                        })
                        .collect();
                    Feature::multi_hot(&f.name, &sets)
                }
                FeatureValues::Dense { dim, values } => Feature {
                    name: f.name.clone(),
                    values: FeatureValues::Dense {
                        dim: *dim,
                        values: kept.iter().flat_map(|&e| values[e * dim..(e + 1) * dim].iter().copied()).collect(),
                    },
                },
            })
            .collect();
        Entities { ids: self.ids.retain(keep), features }
    }

    /// Feeds id and every feature value of entity `e` into a hasher.
    pub fn hash_entity_into(&self, e: u32, h: &mut Sha256) {
        self.ids.hash_into(e, h);
        for f in &self.features {
            f.hash_value_into(e as usize, h);
        }
    }

    pub fn schema(&self) -> Vec<FeatureSchema> {
        self.features.iter().map(Feature::schema).collect()
    }
}

/// Interactions in input order (or canonical order once stored).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Interactions {
    pub user: Vec<u32>,
    pub item: Vec<u32>,
    pub timestamp: Option<Vec<i64>>,
    pub weight: Option<Vec<f32>>,
}

impl Interactions {
    pub fn len(&self) -> usize {
        self.user.len()
    }

    pub fn is_empty(&self) -> bool {
        self.user.is_empty()
    }

    /// Keeps rows in the given order (a permutation or a subset of row indices).
    pub fn select(&self, rows: &[usize]) -> Interactions {
        Interactions {
            user: rows.iter().map(|&r| self.user[r]).collect(),
            item: rows.iter().map(|&r| self.item[r]).collect(),
            timestamp: self.timestamp.as_ref().map(|t| rows.iter().map(|&r| t[r]).collect()),
            weight: self.weight.as_ref().map(|w| rows.iter().map(|&r| w[r]).collect()),
        }
    }
}

/// A whole dataset as ingested.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Input format it came from (`movielens-100k`, `movielens-1m`, `csv`, `parquet`, ...).
    pub format: String,
    pub users: Entities,
    pub items: Entities,
    pub interactions: Interactions,
}

impl Dataset {
    /// Feeds the canonical content of interaction `r` (original ids, time, weight) into a hasher.
    pub fn hash_row_into(&self, r: usize, h: &mut Sha256) {
        let x = &self.interactions;
        self.users.ids.hash_into(x.user[r], h);
        self.items.ids.hash_into(x.item[r], h);
        if let Some(t) = &x.timestamp {
            h.update(t[r].to_le_bytes());
        }
        if let Some(w) = &x.weight {
            h.update(w[r].to_bits().to_le_bytes());
        }
    }

    /// SHA-256 of the item catalog (ids and features of every item). No deletion changes it.
    pub fn item_catalog_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"eemu-items-v1");
        h.update((self.items.len() as u64).to_le_bytes());
        for e in 0..self.items.len() as u32 {
            self.items.hash_entity_into(e, &mut h);
        }
        h.finalize().into()
    }
}
