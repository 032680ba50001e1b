//! `eemu ingest`: read an input (MovieLens 100K / 1M folder, or generic CSV / Parquet tables),
//! order, split and shard it, compute lineage hashes, and publish it into a store.
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use tracing::info;

use crate::config::Config;
use crate::data::generic::{self, GenericInputs, Side};
use crate::data::{movielens, table::is_parquet, Dataset};
use crate::store::{files::sha256_file, Manifest, Prepared, Source, Store};

/// Input formats `eemu ingest` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InputFormat {
    /// Decide from the input: a folder with `u.data` or `ratings.dat`, or a file's extension.
    Auto,
    /// MovieLens 100K folder (`u.data`, `u.user`, `u.item`).
    #[value(name = "ml-100k")]
    Ml100k,
    /// MovieLens 1M folder (`ratings.dat`, `users.dat`, `movies.dat`).
    #[value(name = "ml-1m")]
    Ml1m,
    /// Generic CSV tables, columns as configured in `[ingest]`.
    Csv,
    /// Generic Parquet tables, columns as configured in `[ingest]`.
    Parquet,
}

/// What to ingest.
#[derive(Debug, Clone)]
pub struct IngestRequest {
    pub format: InputFormat,
    pub input: PathBuf,
    pub users: Option<PathBuf>,
    pub items: Option<PathBuf>,
}

/// Resolves `auto` to a concrete format.
pub fn detect(format: InputFormat, input: &Path) -> Result<InputFormat> {
    if format != InputFormat::Auto {
        return Ok(format);
    }
    if input.is_dir() {
        if input.join("u.data").is_file() {
            return Ok(InputFormat::Ml100k);
        }
        if input.join("ratings.dat").is_file() {
            return Ok(InputFormat::Ml1m);
        }
        bail!("{}: a folder without u.data or ratings.dat; name the format with --format", input.display());
    }
    Ok(if is_parquet(input) { InputFormat::Parquet } else { InputFormat::Csv })
}

/// The input files a request reads, for provenance.
fn source_files(format: InputFormat, r: &IngestRequest) -> Vec<PathBuf> {
    let inputs: Vec<PathBuf> = match format {
        InputFormat::Ml100k => ["u.data", "u.user", "u.item"].iter().map(|f| r.input.join(f)).collect(),
        InputFormat::Ml1m => ["ratings.dat", "users.dat", "movies.dat"].iter().map(|f| r.input.join(f)).collect(),
        _ => vec![r.input.clone()],
    };
    inputs.into_iter().chain(r.users.clone()).chain(r.items.clone()).collect()
}

/// Reads the request's input into a dataset (nothing is written).
pub fn read(format: InputFormat, r: &IngestRequest, config: &Config) -> Result<Dataset> {
    match format {
        InputFormat::Ml100k | InputFormat::Ml1m => {
            let mut dataset = if format == InputFormat::Ml100k {
                movielens::read_ml100k(&r.input)?
            } else {
                movielens::read_ml1m(&r.input)?
            };
            // Extra features (title embeddings, say) from --users / --items tables.
            generic::add_features(&mut dataset.users, r.users.as_deref(), Side::Users, &config.ingest)?;
            generic::add_features(&mut dataset.items, r.items.as_deref(), Side::Items, &config.ingest)?;
            Ok(dataset)
        }
        InputFormat::Csv | InputFormat::Parquet => {
            let inputs = GenericInputs { interactions: &r.input, users: r.users.as_deref(), items: r.items.as_deref() };
            generic::read(&inputs, &config.ingest)
        }
        InputFormat::Auto => unreachable!("detect() resolves auto"),
    }
}

/// Runs the whole ingest; the store changes only if every step succeeds.
pub fn ingest(request: &IngestRequest, config: &Config, store: &Store) -> Result<Manifest> {
    let start = Instant::now();
    let format = detect(request.format, &request.input)?;
    info!(input = %request.input.display(), ?format, "reading input");
    let dataset = read(format, request, config)?;
    if dataset.interactions.is_empty() {
        bail!("{}: no interactions", request.input.display());
    }
    info!(
        users = dataset.users.len(),
        items = dataset.items.len(),
        interactions = dataset.interactions.len(),
        seconds = start.elapsed().as_secs_f32(),
        "read"
    );
    let prepared = Prepared::new(dataset, config);
    info!(shards = config.shards.count, seconds = start.elapsed().as_secs_f32(), "split and sharded");
    let mut sources = Vec::new();
    for path in source_files(format, request) {
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        sources.push(Source { path: path.display().to_string(), bytes, sha256: sha256_file(&path)? });
    }
    if let Ok(old) = store.manifest() {
        if old.ledger_applied > 0 {
            tracing::warn!(
                store = %store.root().display(),
                "this store has applied deletion requests (ledger entries up to {}); they are not re-applied to new input: \
                 make sure the input no longer holds the deleted rows",
                old.ledger_applied
            );
        }
    }
    let manifest = store.publish(&prepared, sources)?;
    info!(store = %store.root().display(), dataset = %manifest.dataset.id, seconds = start.elapsed().as_secs_f32(), "published");
    Ok(manifest)
}
