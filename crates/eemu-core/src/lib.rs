//! eemu-core: everything eemu does without libtorch. Configuration, input parsers, the
//! evaluation split, deletion-stable sharding, the store with lineage hashes, and the command
//! line front (`eemu`). Kept apart from the `eemu` crate so the front binary never loads
//! libtorch (about 0.8 s and 450 MB at start-up); the `eemu` crate re-exports these modules.
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod config;
pub mod data;
pub mod error;
pub mod fault;
pub mod forget;
pub mod ingest;
pub mod output;
pub mod status;
pub mod store;
pub mod verify;
