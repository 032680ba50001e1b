//! eemu: batch inference for recommendation models that can be exactly unlearned (EEMU,
//! Alshabanah et al., PoPETs 2025). Modules follow the data flow: `data` (parsers, split,
//! shards) -> `store` (dataset files, lineage) -> `model` / `train` (per-shard two-tower models)
//! -> evaluation and inference stages. The libtorch-free stages live in `eemu-core` and are
//! re-exported here under the same names.
pub use eemu_core::{cli, cluster, compare, config, data, error, fault, forget, ingest, output, status, store, verify};

/// mimalloc serves every allocation of a process that links this library, libtorch's included:
/// its `override` feature defines `malloc`, `free` and the rest in the executable, and
/// libtorch's and libc's calls bind to those. glibc's malloc fragmented under training's mix of
/// batched passes and per-user steps (FOMAML after plain epochs ran 18-37% slower in the same
/// process); with mimalloc, training writes the same bytes in less time and memory
/// (docs/benchmarks.md, "The allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod engine;
pub mod eval;
pub mod infer;
pub mod model;
pub mod progress;
pub mod train;
pub mod version;
