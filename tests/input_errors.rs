//! Bad generic input gets a clear error naming file, line or row, and column.
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Field, Schema};
use common::*;
use eemu::config::Config;
use eemu::data::generic::{read, GenericInputs};
use eemu::error::EemuError;

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn read_error(path: &Path, config: &Config) -> String {
    let inputs = GenericInputs { interactions: path, users: None, items: None };
    let e = read(&inputs, &config.ingest).expect_err("must fail");
    assert!(e.downcast_ref::<EemuError>().is_some(), "an input error, got {e:#}");
    format!("{e:#}")
}

#[test]
fn missing_column_lists_the_header() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"user_id,item,timestamp\n1,2,3\n");
    let e = read_error(&p, &Config::default());
    assert!(e.contains("x.csv:1: column 'item_id': column is missing (found: 'user_id', 'item', 'timestamp')"), "{e}");
}

#[test]
fn wrong_separator_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"user_id;item_id;timestamp\n1;2;3\n");
    let e = read_error(&p, &Config::default());
    assert!(e.contains("column 'user_id'") && e.contains("separated by ';'"), "{e}");
}

#[test]
fn unparsable_number_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"user_id,item_id,timestamp\n1,2,3\n1,3,4.5x\n");
    let e = read_error(&p, &Config::default());
    assert_eq!(
        e,
        "x.csv:3: column 'timestamp': expected an integer, found \"4.5x\"".replace("x.csv", &p.display().to_string())
    );
}

#[test]
fn duplicate_header_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"user_id,item_id,item_id,timestamp\n1,2,2,3\n");
    let e = read_error(&p, &Config::default());
    assert!(e.contains("x.csv:1: column 'item_id': duplicate column in the header"), "{e}");
}

#[test]
fn empty_file_and_header_only_file_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"");
    assert!(read_error(&p, &Config::default()).contains("x.csv: file is empty"));
    let p = write(dir.path(), "y.csv", b"user_id,item_id,timestamp\n");
    assert!(read_error(&p, &Config::default()).contains("y.csv: file has a header but no rows"));
}

#[test]
fn non_utf8_is_rejected_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"user_id,item_id,timestamp\n1,2,3\nb\xe9a,2,3\n");
    let e = read_error(&p, &Config::default());
    assert!(e.contains("x.csv:3: not valid UTF-8"), "{e}");
}

#[test]
fn ragged_rows_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "x.csv", b"user_id,item_id,timestamp\n1,2,3\n1,2\n");
    let e = read_error(&p, &Config::default());
    assert!(e.contains("x.csv:3: expected 3 fields like the header, found 2"), "{e}");
}

#[test]
fn parquet_missing_column_and_wrong_type_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", arrow::datatypes::DataType::Int64, false),
        Field::new("item_id", arrow::datatypes::DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![Arc::new(Int64Array::from(vec![1, 2])), Arc::new(StringArray::from(vec!["a", "b"]))],
    )
    .unwrap();
    let p = dir.path().join("x.parquet");
    eemu::store::files::write_parquet_atomic(&p, &batch).unwrap();
    let e = read_error(&p, &Config::default());
    assert!(e.contains("x.parquet:1: column 'timestamp': column is missing"), "{e}");
    let mut config = Config::default();
    config.ingest.timestamp_column = String::new();
    config.ingest.id_type = eemu::config::IdType::Int;
    let e = read_error(&p, &config);
    assert!(e.contains("x.parquet row 0: column 'item_id': expected an integer id"), "{e}");
}

#[test]
fn ids_missing_from_a_feature_table_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let x = write(dir.path(), "x.csv", b"user_id,item_id,timestamp\na,1,3\nb,2,4\n");
    let users = write(dir.path(), "users.csv", b"user_id,age\na,18\n");
    let mut config = Config::default();
    config.ingest.user_features = vec![eemu::config::FeatureDecl {
        name: "age".into(),
        column: None,
        kind: eemu::config::FeatureKindDecl::Categorical,
        dim: None,
    }];
    let inputs = GenericInputs { interactions: &x, users: Some(&users), items: None };
    let e = format!("{:#}", read(&inputs, &config.ingest).unwrap_err());
    assert!(e.contains("x.csv:3: column 'user_id': id \"b\" is not in the feature table"), "{e}");
}

#[test]
fn dense_features_of_the_wrong_length_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let files = synth_files(dir.path(), eemu::data::synth::SynthFormat::Csv, 1);
    let text = std::fs::read_to_string(&files[2]).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[4] = lines[4].rsplit_once(';').unwrap().0.to_string();
    std::fs::write(&files[2], lines.join("\n") + "\n").unwrap();
    let config = demo_config();
    let inputs = GenericInputs { interactions: &files[0], users: Some(&files[1]), items: Some(&files[2]) };
    let e = format!("{:#}", read(&inputs, &config.ingest).unwrap_err());
    assert!(e.contains("items.csv:5: column 'embedding': expected 8 numbers separated by \";\", found 7"), "{e}");
}

/// A MovieLens 1M folder of two users and three movies, and an item table with a 2-d dense
/// `title` feature (rows out of id order), read through `eemu ingest`'s reader.
fn ml1m_with_items(dir: &Path, table: &[u8], config_text: &str) -> anyhow::Result<eemu::data::Dataset> {
    use eemu::ingest::{read as ingest_read, IngestRequest, InputFormat};
    let folder = dir.join("ml-1m");
    std::fs::create_dir_all(&folder).unwrap();
    write(&folder, "users.dat", b"1::F::1::10::48067\n2::M::56::16::70072\n");
    write(&folder, "movies.dat", b"1::A (1995)::Drama\n2::B (1996)::Comedy\n3::C (1997)::Drama\n");
    write(&folder, "ratings.dat", b"1::1::5::10\n1::2::5::11\n2::3::3::12\n");
    let items = write(dir, "titles.csv", table);
    let config = Config::parse(config_text, "test.toml").unwrap();
    let request = IngestRequest { format: InputFormat::Ml1m, input: folder, users: None, items: Some(items) };
    ingest_read(InputFormat::Ml1m, &request, &config)
}

const TITLE_CONFIG: &str = "[ingest]\nitem_features = [{ name = \"title\", kind = \"dense\", dim = 2 }]\n";

#[test]
fn movielens_items_take_extra_features_from_a_table() {
    let dir = tempfile::tempdir().unwrap();
    let d = ml1m_with_items(dir.path(), b"item_id,title\n3,0.5;0.25\n1,1;2\n2,-1;0\n", TITLE_CONFIG).unwrap();
    let names: Vec<&str> = d.items.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["genres", "year", "title"]);
    let eemu::data::FeatureValues::Dense { dim, values } = &d.items.features[2].values else { panic!("dense") };
    // Items 1, 2, 3 in id order, whatever the table's row order.
    assert_eq!((*dim, values.as_slice()), (2, &[1.0, 2.0, -1.0, 0.0, 0.5, 0.25][..]));
}

#[test]
fn a_movielens_feature_table_must_cover_exactly_the_folders_items() {
    let dir = tempfile::tempdir().unwrap();
    let missing = ml1m_with_items(dir.path(), b"item_id,title\n1,1;2\n3,0;0\n", TITLE_CONFIG).unwrap_err();
    let e = format!("{missing:#}");
    assert!(e.contains("titles.csv: column 'item_id': no row for item 2"), "{e}");
    let extra = ml1m_with_items(dir.path(), b"item_id,title\n1,1;2\n7,0;0\n2,0;0\n3,0;0\n", TITLE_CONFIG).unwrap_err();
    let e = format!("{extra:#}");
    assert!(e.contains("titles.csv:3: column 'item_id': item 7 is not in the input's items"), "{e}");
    // The same at the end of either list.
    let short = ml1m_with_items(dir.path(), b"item_id,title\n2,0;0\n1,1;2\n", TITLE_CONFIG).unwrap_err();
    let e = format!("{short:#}");
    assert!(e.contains("titles.csv: column 'item_id': no row for item 3"), "{e}");
    let long = ml1m_with_items(dir.path(), b"item_id,title\n9,0;0\n1,1;2\n2,0;0\n3,0;0\n", TITLE_CONFIG).unwrap_err();
    let e = format!("{long:#}");
    assert!(e.contains("titles.csv:2: column 'item_id': item 9 is not in the input's items"), "{e}");
}

#[test]
fn a_movielens_feature_table_is_declared_and_adds_new_names_only() {
    let dir = tempfile::tempdir().unwrap();
    let clash = "[ingest]\nitem_features = [{ name = \"genres\", column = \"title\", kind = \"dense\", dim = 2 }]\n";
    let e = format!("{:#}", ml1m_with_items(dir.path(), b"item_id,title\n1,1;2\n2,0;0\n3,0;0\n", clash).unwrap_err());
    assert!(e.contains("items already have a feature named \"genres\""), "{e}");
    let e = format!("{:#}", ml1m_with_items(dir.path(), b"item_id,title\n1,1;2\n", "").unwrap_err());
    assert!(e.contains("ingest.item_features declares no feature to read from it"), "{e}");
}

#[test]
fn parquet_inputs_in_the_usual_compressions_are_read() {
    // pyarrow and Spark write Snappy by default; gzip, LZ4 and zstd are common options.
    use parquet::arrow::ArrowWriter;
    use parquet::basic::{Compression, GzipLevel, ZstdLevel};
    use parquet::file::properties::WriterProperties;
    let dir = tempfile::tempdir().unwrap();
    let schema = Arc::new(Schema::new(vec![
        Field::new("user_id", arrow::datatypes::DataType::Int64, false),
        Field::new("item_id", arrow::datatypes::DataType::Int64, false),
        Field::new("timestamp", arrow::datatypes::DataType::Int64, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 2])),
            Arc::new(Int64Array::from(vec![10, 11, 10])),
            Arc::new(Int64Array::from(vec![5, 6, 7])),
        ],
    )
    .unwrap();
    let codecs = [
        Compression::UNCOMPRESSED,
        Compression::SNAPPY,
        Compression::GZIP(GzipLevel::default()),
        Compression::LZ4_RAW,
        Compression::ZSTD(ZstdLevel::default()),
    ];
    for codec in codecs {
        let p = dir.path().join(format!("{codec:?}.parquet").replace(['(', ')', ' '], "_"));
        let props = WriterProperties::builder().set_compression(codec).build();
        let mut w = ArrowWriter::try_new(std::fs::File::create(&p).unwrap(), schema.clone(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let inputs = GenericInputs { interactions: &p, users: None, items: None };
        let d = read(&inputs, &Config::default().ingest).unwrap_or_else(|e| panic!("{codec:?}: {e:#}"));
        assert_eq!(d.interactions.item, vec![0, 1, 0], "{codec:?}");
        assert_eq!(d.interactions.timestamp, Some(vec![5, 6, 7]), "{codec:?}");
    }
}
