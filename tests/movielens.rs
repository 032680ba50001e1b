//! The MovieLens datasets in ../shared/data (licensed, never committed), when present.
use std::path::PathBuf;

use eemu::config::Config;
use eemu::ingest::{ingest, IngestRequest, InputFormat};
use eemu::store::Store;

fn shared(name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(name);
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("skipping: {} not present", p.display());
        None
    }
}

#[test]
fn ml100k_ingests_with_the_documented_counts() {
    let Some(input) = shared("ml-100k") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/ml-100k.toml")).unwrap();
    let request = IngestRequest { format: InputFormat::Auto, input, users: None, items: None };
    let m = ingest(&request, &config, &Store::new(dir.path())).unwrap();
    assert_eq!((m.dataset.users, m.dataset.items, m.dataset.interactions), (943, 1682, 100_000));
    assert_eq!((m.dataset.valid, m.dataset.test), (943, 943));
    assert_eq!(m.shards.iter().map(|s| s.rows).sum::<usize>(), 100_000 - 2 * 943);
    assert_eq!(m.dataset.format, "movielens-100k");
    let names: Vec<&str> = m.dataset.user_features.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["age", "gender", "occupation"]);
}

#[test]
fn ml1m_partial_ingests_with_the_documented_counts() {
    let Some(input) = shared("ml-1m-partial") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs/ml-1m.toml")).unwrap();
    let request = IngestRequest { format: InputFormat::Ml1m, input, users: None, items: None };
    let m = ingest(&request, &config, &Store::new(dir.path())).unwrap();
    assert_eq!((m.dataset.users, m.dataset.items, m.dataset.interactions), (6040, 3883, 487_650));
    assert_eq!(m.dataset.users_with_interactions, 2999);
    assert_eq!(m.dataset.test, 2999);
    assert_eq!(m.dataset.item_features.len(), 2);
}
