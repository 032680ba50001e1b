//! eemu: batch inference for recommendation models that can be exactly unlearned (EEMU,
//! Alshabanah et al., PoPETs 2025). Modules follow the data flow: `data` (parsers, split,
//! shards) -> `store` (dataset files, lineage) -> `model` / `train` (per-shard two-tower models)
//! -> evaluation and inference stages. The libtorch-free stages live in `eemu-core` and are
//! re-exported here under the same names.
pub use eemu_core::{cli, cluster, compare, config, data, error, fault, forget, ingest, output, status, store, verify};

pub mod engine;
pub mod eval;
pub mod infer;
pub mod model;
pub mod progress;
pub mod train;
pub mod version;
