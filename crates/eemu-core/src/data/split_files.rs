//! A split supplied by the user: train, validation and test files (TSV, CSV or Parquet; columns
//! user id, item id and an optional timestamp, named as in `[ingest]`), plus an optional file
//! listing the candidate items. Items that occur only in the validation or test file, or only in
//! the items file, are ranked too (with the embeddings the model has for them). Users without a
//! test row are trained on but not evaluated. One validation and one test item per user.
use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;

use super::split::Split;
use super::table::{RawIds, Table};
use super::{Dataset, Entities, Ids, Interactions};
use crate::config::{IdType, IngestConfig};

/// The files of a supplied split.
pub struct SplitFiles<'a> {
    pub train: &'a Path,
    pub valid: &'a Path,
    pub test: &'a Path,
    pub items: Option<&'a Path>,
}

/// `\t` for `.tsv` files, the configured delimiter otherwise.
fn delimiter(path: &Path, config: &IngestConfig) -> u8 {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tsv")) {
        b'\t'
    } else {
        config.delimiter.as_bytes()[0]
    }
}

/// Ids as strings when the files disagree on the type.
fn unify(parts: Vec<RawIds>) -> Vec<RawIds> {
    if parts.iter().all(|p| matches!(p, RawIds::Int(_))) || parts.iter().all(|p| matches!(p, RawIds::Str(_))) {
        return parts;
    }
    parts
        .into_iter()
        .map(|p| match p {
            RawIds::Int(v) => RawIds::Str(v.iter().map(i64::to_string).collect()),
            s => s,
        })
        .collect()
}

fn ids_of(parts: &[RawIds]) -> Ids {
    match parts.first() {
        Some(RawIds::Int(_)) => {
            Ids::from_int(parts.iter().flat_map(|p| if let RawIds::Int(v) = p { v.clone() } else { vec![] }).collect())
        }
        _ => Ids::from_strings(
            parts.iter().flat_map(|p| if let RawIds::Str(v) = p { v.clone() } else { vec![] }).collect(),
        ),
    }
}

fn internal(raw: &RawIds, ids: &Ids) -> Vec<u32> {
    match raw {
        RawIds::Int(v) => v.iter().map(|&x| ids.find_int(x).expect("id was collected")).collect(),
        RawIds::Str(v) => v.iter().map(|x| ids.find_str(x).expect("id was collected")).collect(),
    }
}

/// Reads the split into a dataset (rows: train, then validation, then test) and its split labels.
pub fn read(files: &SplitFiles, config: &IngestConfig) -> Result<(Dataset, Vec<Split>)> {
    let parts = [(files.train, Split::Train), (files.valid, Split::Valid), (files.test, Split::Test)];
    let mut with_time = !config.timestamp_column.is_empty();
    for (path, _) in &parts {
        let names = Table::column_names(path, delimiter(path, config))?;
        with_time &= names.contains(&config.timestamp_column);
    }
    let mut columns = vec![config.user_column.as_str(), config.item_column.as_str()];
    if with_time {
        columns.push(&config.timestamp_column);
    }
    let tables: Vec<Table> =
        parts.iter().map(|(path, _)| Table::read(path, &columns, delimiter(path, config))).collect::<Result<_>>()?;
    let id_type = config.id_type;
    let users = unify(tables.iter().map(|t| t.ids(&config.user_column, id_type)).collect::<Result<_>>()?);
    let mut item_parts: Vec<RawIds> =
        tables.iter().map(|t| t.ids(&config.item_column, id_type)).collect::<Result<_>>()?;
    if let Some(path) = files.items {
        let table = Table::read(path, &[config.item_column.as_str()], delimiter(path, config))?;
        let kind = match (&item_parts[0], id_type) {
            (_, IdType::String) | (RawIds::Str(_), _) => IdType::String,
            _ => IdType::Auto,
        };
        item_parts.push(table.ids(&config.item_column, kind)?);
    }
    let items = unify(item_parts);
    let (user_ids, item_ids) = (ids_of(&users), ids_of(&items));
    let mut x = Interactions { timestamp: with_time.then(Vec::new), ..Interactions::default() };
    let mut split = Vec::new();
    for (k, (table, (_, role))) in tables.iter().zip(parts).enumerate() {
        let u = internal(&users[k], &user_ids);
        if role != Split::Train {
            let mut seen = HashMap::new();
            for (row, &user) in u.iter().enumerate() {
                if let Some(first) = seen.insert(user, row) {
                    return Err(table.error(
                        row,
                        &config.user_column,
                        format!(
                            "user {} already has a held-out item in this file (row of {first}); one per user is supported",
                            user_ids.display(user)
                        ),
                    ));
                }
            }
        }
        x.user.extend(&u);
        x.item.extend(internal(&items[k], &item_ids));
        if let Some(t) = x.timestamp.as_mut() {
            t.extend(table.i64s(&config.timestamp_column)?);
        }
        split.extend(std::iter::repeat_n(role, table.rows()));
    }
    let dataset = Dataset {
        format: "split-files".into(),
        users: Entities { ids: user_ids, features: vec![] },
        items: Entities { ids: item_ids, features: vec![] },
        interactions: x,
    };
    Ok((dataset, split))
}

/// Writes a dataset's split as `train.csv`, `valid.csv` and `test.csv` in `dir` (original ids,
/// and the timestamp when the dataset has one), the layout `read` takes back.
pub fn write(dataset: &Dataset, split: &[Split], dir: &Path) -> Result<[std::path::PathBuf; 3]> {
    use std::fmt::Write as _;
    std::fs::create_dir_all(dir).map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    let x = &dataset.interactions;
    let header = if x.timestamp.is_some() { "user_id,item_id,timestamp\n" } else { "user_id,item_id\n" };
    let mut texts = [header.to_string(), header.to_string(), header.to_string()];
    for r in 0..x.len() {
        let text = &mut texts[split[r] as usize];
        let (u, i) = (dataset.users.ids.display(x.user[r]), dataset.items.ids.display(x.item[r]));
        for field in [&u, &i] {
            if field.contains([',', '"', '\n', '\r']) {
                anyhow::bail!("id {field:?} contains a CSV delimiter or quote; export to CSV is not possible");
            }
        }
        let _ = match &x.timestamp {
            Some(t) => writeln!(text, "{u},{i},{}", t[r]),
            None => writeln!(text, "{u},{i}"),
        };
    }
    let paths = [dir.join("train.csv"), dir.join("valid.csv"), dir.join("test.csv")];
    for (path, text) in paths.iter().zip(&texts) {
        crate::store::files::write_atomic(path, text.as_bytes())?;
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_file(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn rows_keep_their_role_and_test_only_items_join_the_catalog() {
        let dir = tempfile::tempdir().unwrap();
        let train = write_file(dir.path(), "train.tsv", "user_id\titem_id\n1\t10\n1\t11\n2\t10\n3\t12\n");
        let valid = write_file(dir.path(), "valid.csv", "user_id,item_id\n1,12\n");
        let test = write_file(dir.path(), "test.csv", "user_id,item_id\n1,99\n2,11\n");
        let items = write_file(dir.path(), "items.csv", "item_id\n10\n11\n12\n99\n100\n");
        let files = SplitFiles { train: &train, valid: &valid, test: &test, items: Some(&items) };
        let (d, split) = read(&files, &IngestConfig::default()).unwrap();
        assert_eq!(d.items.ids, Ids::Int(vec![10, 11, 12, 99, 100]));
        assert_eq!(d.users.ids, Ids::Int(vec![1, 2, 3]));
        assert!(d.interactions.timestamp.is_none());
        use Split::*;
        assert_eq!(split, vec![Train, Train, Train, Train, Valid, Test, Test]);
        assert_eq!(d.interactions.item[5], 3, "item 99 (test only) has an internal id");
    }

    #[test]
    fn a_written_split_reads_back_with_the_same_rows_and_roles() {
        let dir = tempfile::tempdir().unwrap();
        let train = write_file(dir.path(), "train.csv", "user_id,item_id,timestamp\na,10,1\na,11,2\nb,10,3\n");
        let valid = write_file(dir.path(), "valid.csv", "user_id,item_id,timestamp\na,12,5\n");
        let test = write_file(dir.path(), "test.csv", "user_id,item_id,timestamp\na,13,6\nb,12,7\n");
        let files = SplitFiles { train: &train, valid: &valid, test: &test, items: None };
        let (d, split) = read(&files, &IngestConfig::default()).unwrap();
        let out = dir.path().join("out");
        let paths = write(&d, &split, &out).unwrap();
        let again = SplitFiles { train: &paths[0], valid: &paths[1], test: &paths[2], items: None };
        let (d2, split2) = read(&again, &IngestConfig::default()).unwrap();
        assert_eq!((d2, split2), (d, split));
    }

    #[test]
    fn a_missing_column_names_the_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let train = write_file(dir.path(), "train.csv", "user_id,item_id\n1,10\n");
        let valid = write_file(dir.path(), "valid.csv", "user_id,item\n1,12\n");
        let test = write_file(dir.path(), "test.csv", "user_id,item_id\n1,11\n");
        let files = SplitFiles { train: &train, valid: &valid, test: &test, items: None };
        let e = format!("{:#}", read(&files, &IngestConfig::default()).unwrap_err());
        assert!(e.contains("valid.csv:1: column 'item_id': column is missing"), "{e}");
    }

    #[test]
    fn two_test_items_for_one_user_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let train = write_file(dir.path(), "train.csv", "user_id,item_id\n1,10\n");
        let valid = write_file(dir.path(), "valid.csv", "user_id,item_id\n1,12\n");
        let test = write_file(dir.path(), "test.csv", "user_id,item_id\n1,11\n1,13\n");
        let files = SplitFiles { train: &train, valid: &valid, test: &test, items: None };
        let e = format!("{:#}", read(&files, &IngestConfig::default()).unwrap_err());
        assert!(e.contains("test.csv:3: column 'user_id'") && e.contains("already has a held-out item"), "{e}");
    }
}
