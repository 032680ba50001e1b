//! Ingest into a store: determinism, lineage, atomicity, round trip.
mod common;

use common::*;
use eemu::config::{Config, SplitMode};
use eemu::data::synth::SynthFormat;
use eemu::store::Store;

#[test]
fn ingesting_the_same_data_twice_gives_byte_identical_stores() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 1);
    let config = demo_config();
    ingest_into(&dir.path().join("a"), &files, &config).unwrap();
    ingest_into(&dir.path().join("b"), &files, &config).unwrap();
    let (a, b) = (snapshot(&dir.path().join("a")), snapshot(&dir.path().join("b")));
    assert!(a.len() > 3 + 8, "dataset files, lineage files, manifest: {:?}", a.keys());
    assert_eq!(a, b);
}

#[test]
fn csv_and_parquet_inputs_give_the_same_shards_and_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synth_files(&dir.path().join("csv"), SynthFormat::Csv, 2);
    let pq = synth_files(&dir.path().join("pq"), SynthFormat::Parquet, 2);
    let config = demo_config();
    let a = ingest_into(&dir.path().join("a"), &csv, &config).unwrap();
    let b = ingest_into(&dir.path().join("b"), &pq, &config).unwrap();
    assert_eq!(a.shards, b.shards);
    assert_eq!(a.dataset.user_features, b.dataset.user_features);
    assert_eq!(a.dataset.item_features, b.dataset.item_features);
    assert_eq!(a.dataset.item_catalog_hash, b.dataset.item_catalog_hash);
    assert_eq!((a.dataset.format.as_str(), b.dataset.format.as_str()), ("csv", "parquet"));
}

#[test]
fn changing_one_row_changes_exactly_one_shard_lineage() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 3);
    let mut config = demo_config();
    config.split.mode = SplitMode::Production;
    let before = ingest_into(&dir.path().join("a"), &files, &config).unwrap();
    for victim in [0usize, 17, 1234] {
        let edited = dir.path().join(format!("edited-{victim}.csv"));
        filter_csv(&files[0], &edited, |i| i != victim);
        let files2 = [edited, files[1].clone(), files[2].clone()];
        let after = ingest_into(&dir.path().join(format!("b{victim}")), &files2, &config).unwrap();
        let changed: Vec<usize> = before
            .shards
            .iter()
            .zip(&after.shards)
            .filter(|(x, y)| x.lineage != y.lineage)
            .map(|(x, _)| x.index)
            .collect();
        assert_eq!(changed.len(), 1, "deleting row {victim} changed shards {changed:?}");
        let s = changed[0];
        assert_eq!(after.shards[s].rows + 1, before.shards[s].rows);
        for (x, y) in before.shards.iter().zip(&after.shards).filter(|(x, _)| x.index != s) {
            assert_eq!(x, y, "untouched shard {} must keep its rows and hash", x.index);
        }
    }
}

#[test]
fn the_training_config_is_part_of_every_lineage_hash() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 4);
    let config = demo_config();
    let a = ingest_into(&dir.path().join("a"), &files, &config).unwrap();
    let mut other = config.clone();
    other.train.learning_rate = 1e-3;
    let b = ingest_into(&dir.path().join("b"), &files, &other).unwrap();
    assert!(a.shards.iter().zip(&b.shards).all(|(x, y)| x.rows == y.rows && x.lineage != y.lineage));
}

#[test]
fn a_failed_ingest_leaves_the_store_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 5);
    let store = dir.path().join("store");
    let config = demo_config();
    ingest_into(&store, &files, &config).unwrap();
    let before = snapshot(&store);
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(&files[0]).unwrap().replacen("\n", "\nu00001,notanumber,5\n", 1);
    std::fs::write(&bad, text).unwrap();
    let err = ingest_into(&store, &[bad, files[1].clone(), files[2].clone()], &config).unwrap_err();
    assert!(format!("{err:#}").contains("bad.csv:2: column 'item_id'"), "{err:#}");
    assert_eq!(snapshot(&store), before);
}

#[test]
fn reingesting_other_data_removes_the_superseded_dataset_and_lineages() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Csv, 6);
    let store_dir = dir.path().join("store");
    let config = demo_config();
    let first = ingest_into(&store_dir, &files, &config).unwrap();
    let edited = dir.path().join("edited.csv");
    filter_csv(&files[0], &edited, |i| i != 3);
    let second = ingest_into(&store_dir, &[edited, files[1].clone(), files[2].clone()], &config).unwrap();
    let store = Store::new(&store_dir);
    assert!(!store.dataset_dir(&first.dataset.id).exists());
    assert!(store.dataset_dir(&second.dataset.id).exists());
    for s in &first.shards {
        let kept = second.shards.iter().any(|t| t.lineage == s.lineage);
        assert_eq!(store.shard_dir(s.index, &s.lineage).exists(), kept, "shard {}", s.index);
    }
}

#[test]
fn the_stored_dataset_reads_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(&dir.path().join("in"), SynthFormat::Parquet, 7);
    let config = demo_config();
    let store = Store::new(dir.path().join("store"));
    eemu::ingest::ingest(&request(&files), &config, &store).unwrap();
    let format = eemu::ingest::detect(eemu::ingest::InputFormat::Auto, &files[0]).unwrap();
    let dataset = eemu::ingest::read(format, &request(&files), &config).unwrap();
    let expected = eemu::store::Prepared::new(dataset, &config);
    let (_, loaded) = store.load().unwrap();
    assert_eq!(loaded.dataset, expected.dataset);
    assert_eq!(loaded.split, expected.split);
    assert_eq!(loaded.plan, expected.plan);
    assert_eq!(loaded.lineages, expected.lineages);
}

#[test]
fn shipped_configs_are_valid_and_default_toml_matches_the_built_in_defaults() {
    let default = Config::load(&repo_path("configs/default.toml")).unwrap();
    assert_eq!(default, Config::default());
    let mut shipped: Vec<String> = std::fs::read_dir(repo_path("configs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml") && n != "default.toml")
        .collect();
    shipped.sort();
    assert!(shipped.len() >= 4, "{shipped:?}");
    let mut variants = 0;
    for name in &shipped {
        let c = Config::load(&repo_path(&format!("configs/{name}"))).unwrap();
        assert_eq!(c.shards.count, 8, "{name}");
        // A `X-reptile.toml` has the data and model of the reference `X.toml`: only the training differs.
        if let Some(base) = name.strip_suffix("-reptile.toml") {
            let reference = Config::load(&repo_path(&format!("configs/{base}.toml"))).unwrap();
            assert_eq!(c.train.inner_loop, eemu::config::InnerLoop::Batched, "{name}");
            assert_eq!(
                (&c.model, &c.shards, &c.split),
                (&reference.model, &reference.shards, &reference.split),
                "{name}"
            );
            variants += 1;
        }
        // A `X-titles.toml` is `X.toml` plus the title embeddings of scripts/title-embeddings.py.
        if let Some(base) = name.strip_suffix("-titles.toml") {
            let reference = Config::load(&repo_path(&format!("configs/{base}.toml"))).unwrap();
            let title = c.ingest.item_features.iter().find(|f| f.name == "title").expect(name);
            assert_eq!((title.kind, title.dim), (eemu::config::FeatureKindDecl::Dense, Some(384)), "{name}");
            let mut without = c.clone();
            without.ingest = reference.ingest.clone();
            assert_eq!(without, reference, "{name}: only [ingest] may differ from {base}.toml");
            variants += 1;
        }
    }
    assert_eq!(variants, 4, "ml-100k-reptile, ml-1m-reptile, ml-100k-titles and ml-1m-titles: {shipped:?}");
}

#[test]
fn config_errors_name_the_field() {
    let e = Config::parse("[shards]\ncount = 0\n", "x.toml").unwrap_err().to_string();
    assert!(e.contains("x.toml") && e.contains("shards.count"), "{e}");
    let e = Config::parse("[shards]\ncuont = 3\n", "x.toml").unwrap_err().to_string();
    assert!(e.contains("cuont"), "{e}");
    let e = Config::parse("[train]\nlearning_rate = -1.0\n", "x.toml").unwrap_err().to_string();
    assert!(e.contains("train.learning_rate"), "{e}");
    let e = Config::parse("[adapt]\nlearning_rate = 0.0\n", "x.toml").unwrap_err().to_string();
    assert!(e.contains("adapt.learning_rate"), "{e}");
    let e = Config::parse("[ingest]\nitem_features = [{ name = \"v\", kind = \"dense\" }]\n", "x.toml")
        .unwrap_err()
        .to_string();
    assert!(e.contains("ingest.item_features[0].dim"), "{e}");
}
