//! Recommendation output: every user's top-K list as Parquet in a run folder `runs/<run-id>/`,
//! published atomically together with a `manifest.json` and an empty `_SUCCESS` marker.
//!
//! Two layouts: `nested` (one row per user, the list as `List<Struct<item_id, score, rank>>`) and
//! `flat` (one row per list entry). Files are written streaming, one record batch per row group, so
//! memory stays bounded by the row group size whatever the number of users. A run folder is built
//! under a hidden temporary name next to its final one and renamed into place on commit: readers
//! see no run folder or a complete one.
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use arrow::array::{
    ArrayRef, Float32Array, Int32Array, Int32Builder, Int64Builder, ListArray, RecordBatch, StringBuilder, StructArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;

use crate::data::Ids;
use crate::store::files::{parquet_properties, parse_temp_name, process_alive, sync_dir, write_atomic, write_via_temp};

/// Where a user's list comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Scored by the user's own (cluster's) model.
    Personalized,
    /// A fallback list (for example popularity) for a user without a usable model.
    Fallback,
}

impl Source {
    /// The string written to Parquet: `personalized` or `fallback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Personalized => "personalized",
            Source::Fallback => "fallback",
        }
    }
}

/// One user's top-K list: internal item ids and their scores, best first (the entry at position
/// `i` gets rank `i + 1` in the output).
#[derive(Debug, Clone, PartialEq)]
pub struct UserTopK {
    /// Internal item ids, best first.
    pub items: Vec<u32>,
    /// Scores of `items`, same length.
    pub scores: Vec<f32>,
    /// The user's cluster, if any (written as a null otherwise).
    pub cluster: Option<u32>,
    /// Where the list comes from.
    pub source: Source,
}

/// Shape of the recommendations file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One row per user: `user_id, items: list<struct<item_id, score, rank>>, cluster, source`.
    Nested,
    /// One row per list entry: `user_id, rank, item_id, score`.
    Flat,
}

/// File name of the recommendations inside a run folder.
pub const RECOMMENDATIONS_FILE: &str = "recommendations.parquet";

/// File name of the run manifest inside a run folder.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Name of the success marker, written last into a run folder before it is published.
pub const SUCCESS_FILE: &str = "_SUCCESS";

/// Arrow type of original ids: `Int64` or `Utf8`.
fn id_type(ids: &Ids) -> DataType {
    match ids {
        Ids::Int(_) => DataType::Int64,
        Ids::Str(_) => DataType::Utf8,
    }
}

/// Fields of one list entry in the nested layout.
fn entry_fields(items: &Ids) -> Fields {
    Fields::from(vec![
        Field::new("item_id", id_type(items), false),
        Field::new("score", DataType::Float32, false),
        Field::new("rank", DataType::Int32, false),
    ])
}

/// The element field of the nested `items` list (Arrow's default name `item`).
fn list_element(items: &Ids) -> FieldRef {
    Arc::new(Field::new("item", DataType::Struct(entry_fields(items)), false))
}

/// Arrow schema of a recommendations file for the given id types and layout.
pub fn recommendations_schema(users: &Ids, items: &Ids, layout: Layout) -> SchemaRef {
    let fields = match layout {
        Layout::Nested => vec![
            Field::new("user_id", id_type(users), false),
            Field::new("items", DataType::List(list_element(items)), false),
            Field::new("cluster", DataType::Int32, true),
            Field::new("source", DataType::Utf8, false),
        ],
        Layout::Flat => vec![
            Field::new("user_id", id_type(users), false),
            Field::new("rank", DataType::Int32, false),
            Field::new("item_id", id_type(items), false),
            Field::new("score", DataType::Float32, false),
        ],
    };
    Arc::new(Schema::new(fields))
}

/// A column of original ids being filled from internal ids.
enum IdColumn<'a> {
    Int(&'a [i64], Int64Builder),
    Str(&'a [String], StringBuilder),
}

impl<'a> IdColumn<'a> {
    fn new(ids: &'a Ids, capacity: usize) -> IdColumn<'a> {
        match ids {
            Ids::Int(v) => IdColumn::Int(v, Int64Builder::with_capacity(capacity)),
            Ids::Str(v) => IdColumn::Str(v, StringBuilder::with_capacity(capacity, capacity * 8)),
        }
    }

    /// Appends the original id of internal id `index` (checked by the caller).
    fn push(&mut self, index: usize) {
        match self {
            IdColumn::Int(v, b) => b.append_value(v[index]),
            IdColumn::Str(v, b) => b.append_value(&v[index]),
        }
    }

    /// The array of the ids pushed since the last call; the column starts over empty.
    fn finish(&mut self) -> ArrayRef {
        match self {
            IdColumn::Int(_, b) => Arc::new(b.finish()),
            IdColumn::Str(_, b) => Arc::new(b.finish()),
        }
    }
}

/// Checks one user's list before it is written: lengths agree, item ids exist, values fit Int32.
fn check_list(user: usize, rec: &UserTopK, users: &Ids, items: &Ids) -> Result<()> {
    let who = || users.display(user as u32);
    ensure!(
        rec.items.len() == rec.scores.len(),
        "user {}: {} items but {} scores",
        who(),
        rec.items.len(),
        rec.scores.len()
    );
    ensure!(i32::try_from(rec.items.len()).is_ok(), "user {}: list of {} entries is too long", who(), rec.items.len());
    if let Some(&bad) = rec.items.iter().find(|&&i| i as usize >= items.len()) {
        anyhow::bail!("user {}: internal item id {bad} out of range ({} items)", who(), items.len());
    }
    if let Some(c) = rec.cluster {
        ensure!(i32::try_from(c).is_ok(), "user {}: cluster {c} does not fit Int32", who());
    }
    Ok(())
}

/// Writes one batch as its own row group.
fn write_group(writer: &mut ArrowWriter<File>, batch: &RecordBatch) -> Result<()> {
    writer.write(batch).context("cannot write a row group")?;
    writer.flush().context("cannot flush a row group")
}

fn write_nested(
    writer: &mut ArrowWriter<File>,
    schema: &SchemaRef,
    users: &Ids,
    items: &Ids,
    recs: &[UserTopK],
    row_group_rows: usize,
) -> Result<u64> {
    for (chunk_index, chunk) in recs.chunks(row_group_rows).enumerate() {
        let first = chunk_index * row_group_rows;
        let entries: usize = chunk.iter().map(|r| r.items.len()).sum();
        ensure!(
            i32::try_from(entries).is_ok(),
            "{entries} list entries in one row group overflow a Parquet list's offsets: lower row_group_rows"
        );
        let mut user_ids = IdColumn::new(users, chunk.len());
        let mut item_ids = IdColumn::new(items, entries);
        let mut scores = Vec::with_capacity(entries);
        let mut ranks = Vec::with_capacity(entries);
        let mut offsets = Vec::with_capacity(chunk.len() + 1);
        offsets.push(0i32);
        let mut clusters = Int32Builder::with_capacity(chunk.len());
        let mut sources = StringBuilder::with_capacity(chunk.len(), chunk.len() * "personalized".len());
        for (i, rec) in chunk.iter().enumerate() {
            let user = first + i;
            check_list(user, rec, users, items)?;
            user_ids.push(user);
            for (rank, (&item, &score)) in (1i32..).zip(rec.items.iter().zip(&rec.scores)) {
                item_ids.push(item as usize);
                scores.push(score);
                ranks.push(rank);
            }
            // Fits: the group's total was checked above.
            offsets.push(scores.len() as i32);
            clusters.append_option(rec.cluster.map(|c| c as i32));
            sources.append_value(rec.source.as_str());
        }
        let entries = StructArray::try_new(
            entry_fields(items),
            vec![item_ids.finish(), Arc::new(Float32Array::from(scores)), Arc::new(Int32Array::from(ranks))],
            None,
        )
        .context("cannot build the list entries")?;
        let lists = ListArray::try_new(list_element(items), OffsetBuffer::new(offsets.into()), Arc::new(entries), None)
            .context("cannot build the lists")?;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![user_ids.finish(), Arc::new(lists), Arc::new(clusters.finish()), Arc::new(sources.finish())],
        )
        .context("cannot build a record batch")?;
        write_group(writer, &batch)?;
    }
    Ok(recs.len() as u64)
}

/// Rows of the flat layout being gathered for one row group.
struct FlatGroup<'a> {
    user_ids: IdColumn<'a>,
    ranks: Vec<i32>,
    item_ids: IdColumn<'a>,
    scores: Vec<f32>,
}

impl FlatGroup<'_> {
    /// The gathered rows as a batch; the group starts over empty.
    fn take(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let ranks = Int32Array::from(std::mem::take(&mut self.ranks));
        let scores = Float32Array::from(std::mem::take(&mut self.scores));
        RecordBatch::try_new(
            schema.clone(),
            vec![self.user_ids.finish(), Arc::new(ranks), self.item_ids.finish(), Arc::new(scores)],
        )
        .context("cannot build a record batch")
    }
}

fn write_flat(
    writer: &mut ArrowWriter<File>,
    schema: &SchemaRef,
    users: &Ids,
    items: &Ids,
    recs: &[UserTopK],
    row_group_rows: usize,
) -> Result<u64> {
    let capacity = row_group_rows.min(recs.iter().map(|r| r.items.len()).sum::<usize>().max(1));
    let mut group = FlatGroup {
        user_ids: IdColumn::new(users, capacity),
        ranks: Vec::with_capacity(capacity),
        item_ids: IdColumn::new(items, capacity),
        scores: Vec::with_capacity(capacity),
    };
    let mut rows = 0u64;
    for (user, rec) in recs.iter().enumerate() {
        check_list(user, rec, users, items)?;
        for (rank, (&item, &score)) in (1i32..).zip(rec.items.iter().zip(&rec.scores)) {
            group.user_ids.push(user);
            group.ranks.push(rank);
            group.item_ids.push(item as usize);
            group.scores.push(score);
            if group.ranks.len() == row_group_rows {
                write_group(writer, &group.take(schema)?)?;
                rows += row_group_rows as u64;
            }
        }
    }
    if !group.ranks.is_empty() {
        rows += group.ranks.len() as u64;
        write_group(writer, &group.take(schema)?)?;
    }
    Ok(rows)
}

/// Writes `recs` (one entry per internal user id, in order: `recs[u]` belongs to user `u`) to
/// `path` atomically (temporary file, fsync, rename), zstd, at most `row_group_rows` rows per row
/// group.
///
/// Nested layout, one row per user:
/// - `user_id`: Int64 or Utf8 (the original id type of `users`), not null
/// - `items`: `List<Struct<item_id: Int64|Utf8 (type of items), score: Float32, rank: Int32>>`,
///   not null (empty for a user without recommendations)
/// - `cluster`: Int32, null where the user has none
/// - `source`: Utf8, `personalized` or `fallback`, not null
///
/// Flat layout, one row per (user, list entry): `user_id, rank: Int32, item_id, score: Float32`,
/// all not null; a user with an empty list has no rows. `rank` is 1-based (1 = best) in both.
///
/// Written streaming, one record batch per row group, so memory is bounded by the row group size.
/// Returns the number of rows written (users for nested, list entries for flat).
pub fn write_recommendations(
    path: &Path,
    users: &Ids,
    items: &Ids,
    recs: &[UserTopK],
    layout: Layout,
    row_group_rows: usize,
) -> Result<u64> {
    ensure!(row_group_rows > 0, "{}: row_group_rows must be at least 1", path.display());
    ensure!(
        recs.len() == users.len(),
        "{}: {} recommendation lists for {} users (one list per user expected)",
        path.display(),
        recs.len(),
        users.len()
    );
    let schema = recommendations_schema(users, items, layout);
    let props = parquet_properties().into_builder().set_max_row_group_row_count(Some(row_group_rows)).build();
    write_via_temp(path, |tmp| {
        let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .with_context(|| format!("cannot start Parquet file {}", tmp.display()))?;
        let rows = match layout {
            Layout::Nested => write_nested(&mut writer, &schema, users, items, recs, row_group_rows),
            Layout::Flat => write_flat(&mut writer, &schema, users, items, recs, row_group_rows),
        }
        .with_context(|| format!("cannot write recommendations {}", path.display()))?;
        let file = writer.into_inner().with_context(|| format!("cannot finish {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        Ok(rows)
    })
}

/// Checks that a run id is a plain folder name.
fn check_run_id(run_id: &str) -> Result<()> {
    ensure!(
        !run_id.is_empty() && !run_id.starts_with('.') && !run_id.contains(['/', '\\', '\0']),
        "invalid run id '{run_id}': must be a plain folder name (not empty, no '/', not starting with '.')"
    );
    Ok(())
}

/// Name of the temporary folder of a run written by process `pid`.
fn temp_dir_name(run_id: &str, pid: u32) -> String {
    format!(".{run_id}.tmp-{pid}")
}

/// Removes temporary folders of `run_id` left by processes that are gone (or by this one).
fn remove_stale_temps(runs_dir: &Path, run_id: &str) -> Result<()> {
    let entries = fs::read_dir(runs_dir).with_context(|| format!("cannot list {}", runs_dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", runs_dir.display()))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(parse_temp_name).filter(|&(n, _)| n == run_id).map(|(_, pid)| pid)
        else {
            continue;
        };
        let path = entry.path();
        if pid != std::process::id() && process_alive(pid) {
            tracing::warn!("{} belongs to running process {pid}: left in place", path.display());
            continue;
        }
        tracing::info!("removing stale temporary run folder {}", path.display());
        fs::remove_dir_all(&path)
            .with_context(|| format!("cannot remove stale temporary folder {}", path.display()))?;
    }
    Ok(())
}

/// fsyncs every file and folder under `dir` (the files a caller wrote into a run folder).
fn sync_tree(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let path = entry.path();
        let kind = entry.file_type().with_context(|| format!("cannot stat {}", path.display()))?;
        if kind.is_dir() {
            sync_tree(&path)?;
        } else if kind.is_file() {
            File::open(&path).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", path.display()))?;
        }
    }
    sync_dir(dir)
}

/// Whether something (even a dangling link) exists at `path`.
fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// A run folder being written: files go into a hidden temporary folder
/// `runs/.<run-id>.tmp-<pid>` next to the final `runs/<run-id>`; [`RunWriter::commit`] publishes
/// it atomically. Dropping a `RunWriter` without committing removes the temporary folder.
#[derive(Debug)]
pub struct RunWriter {
    runs_dir: PathBuf,
    run_id: String,
    tmp: PathBuf,
    committed: bool,
}

impl RunWriter {
    /// Starts run `run_id` under `runs_dir` (created if needed). Removes a stale temporary folder
    /// of the same run id left by a killed process. Fails early when `runs_dir/<run-id>` exists.
    pub fn begin(runs_dir: &Path, run_id: &str) -> Result<RunWriter> {
        check_run_id(run_id)?;
        fs::create_dir_all(runs_dir).with_context(|| format!("cannot create runs folder {}", runs_dir.display()))?;
        let final_dir = runs_dir.join(run_id);
        ensure!(
            !exists(&final_dir),
            "run '{run_id}' already exists at {}: choose another run id or remove it",
            final_dir.display()
        );
        remove_stale_temps(runs_dir, run_id)?;
        let tmp = runs_dir.join(temp_dir_name(run_id, std::process::id()));
        fs::create_dir(&tmp).with_context(|| format!("cannot create temporary run folder {}", tmp.display()))?;
        Ok(RunWriter { runs_dir: runs_dir.to_path_buf(), run_id: run_id.to_string(), tmp, committed: false })
    }

    /// The run id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Path of a file inside the temporary folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.tmp.join(file)
    }

    /// Writes `manifest.json` (pretty JSON of `manifest`), fsyncs every file in the folder, writes
    /// the empty `_SUCCESS` marker, fsyncs the folder and renames it to `runs/<run-id>`, then
    /// fsyncs `runs/`. Fails, removing the temporary folder, when `runs/<run-id>` already exists.
    /// Returns the final folder.
    pub fn commit(mut self, manifest: &serde_json::Value) -> Result<PathBuf> {
        let manifest_path = self.tmp.join(MANIFEST_FILE);
        let mut bytes = serde_json::to_vec_pretty(manifest)
            .with_context(|| format!("cannot serialize manifest {}", manifest_path.display()))?;
        bytes.push(b'\n');
        write_atomic(&manifest_path, &bytes)?;
        sync_tree(&self.tmp)?;
        write_atomic(&self.tmp.join(SUCCESS_FILE), b"")?;
        crate::fault::point("run-staged");
        let final_dir = self.runs_dir.join(&self.run_id);
        // rename(2) would silently replace an empty folder: check first (a writer racing between
        // this check and the rename is not guarded against).
        ensure!(!exists(&final_dir), "cannot publish run '{}': {} already exists", self.run_id, final_dir.display());
        fs::rename(&self.tmp, &final_dir)
            .with_context(|| format!("cannot rename {} to {}", self.tmp.display(), final_dir.display()))?;
        self.committed = true;
        sync_dir(&self.runs_dir)?;
        Ok(final_dir)
    }
}

impl Drop for RunWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// True when `runs_dir/<run-id>/_SUCCESS` exists.
pub fn run_complete(runs_dir: &Path, run_id: &str) -> bool {
    runs_dir.join(run_id).join(SUCCESS_FILE).is_file()
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float32Type, Int32Type, Int64Type};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use serde_json::json;

    use super::*;

    /// One user of a test input, by original ids: (user, cluster, source, [(item, score)]).
    type Row<I> = (I, Option<u32>, Source, Vec<(I, f32)>);

    /// Test ids of one type: builds `Ids`, finds internal ids, converts to JSON.
    trait TestId: Clone + Ord {
        fn ids(all: Vec<Self>) -> Ids;
        fn find(ids: &Ids, id: &Self) -> u32;
        fn json(&self) -> serde_json::Value;
    }

    impl TestId for i64 {
        fn ids(all: Vec<i64>) -> Ids {
            Ids::from_int(all)
        }
        fn find(ids: &Ids, id: &i64) -> u32 {
            ids.find_int(*id).unwrap()
        }
        fn json(&self) -> serde_json::Value {
            json!(self)
        }
    }

    impl TestId for String {
        fn ids(all: Vec<String>) -> Ids {
            Ids::from_strings(all)
        }
        fn find(ids: &Ids, id: &String) -> u32 {
            ids.find_str(id).unwrap()
        }
        fn json(&self) -> serde_json::Value {
            json!(self)
        }
    }

    /// Users, items and lists from rows given by original ids; rows must be sorted by user id.
    fn inputs<I: TestId>(rows: &[Row<I>], extra_items: &[I]) -> (Ids, Ids, Vec<UserTopK>) {
        let users = I::ids(rows.iter().map(|r| r.0.clone()).collect());
        let mut all_items: Vec<I> = extra_items.to_vec();
        all_items.extend(rows.iter().flat_map(|r| r.3.iter().map(|e| e.0.clone())));
        let items = I::ids(all_items);
        assert_eq!(users.len(), rows.len(), "test rows must have distinct users");
        let recs = rows
            .iter()
            .enumerate()
            .map(|(u, (user, cluster, source, list))| {
                assert_eq!(I::find(&users, user) as usize, u, "test rows must be sorted by user id");
                UserTopK {
                    items: list.iter().map(|(i, _)| I::find(&items, i)).collect(),
                    scores: list.iter().map(|(_, s)| *s).collect(),
                    cluster: *cluster,
                    source: *source,
                }
            })
            .collect();
        (users, items, recs)
    }

    fn int_rows() -> Vec<Row<i64>> {
        vec![
            (3, Some(0), Source::Personalized, vec![(100, 0.9), (7, 0.5), (-2, 0.25)]),
            (11, None, Source::Fallback, vec![(7, 12.0), (100, 3.5)]),
            (40, Some(2), Source::Personalized, vec![]),
            (1_000_000_000_000, Some(1), Source::Personalized, vec![(-2, -1.125)]),
        ]
    }

    fn str_rows() -> Vec<Row<String>> {
        let s = |x: &str| x.to_string();
        vec![
            (s("alice"), Some(5), Source::Personalized, vec![(s("book-1"), 0.75), (s("é-item"), 0.5)]),
            (s("bob"), None, Source::Fallback, vec![(s("pop-9"), 100.0)]),
            (s("carol"), Some(0), Source::Personalized, vec![]),
            (
                s("dave"),
                Some(5),
                Source::Personalized,
                vec![(s("é-item"), 1.0), (s("book-1"), 0.125), (s("pop-9"), 0.0)],
            ),
        ]
    }

    fn read(path: &Path) -> (Vec<RecordBatch>, usize) {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        let groups = builder.metadata().num_row_groups();
        let batches = builder.build().unwrap().collect::<std::result::Result<Vec<_>, _>>().unwrap();
        (batches, groups)
    }

    /// Ids of an Int64 or Utf8 column as strings (as `Ids::display` shows them).
    fn id_strings(a: &dyn Array) -> Vec<String> {
        match a.data_type() {
            DataType::Int64 => a.as_primitive::<Int64Type>().values().iter().map(|v| v.to_string()).collect(),
            DataType::Utf8 => a.as_string::<i32>().iter().map(|v| v.unwrap().to_string()).collect(),
            t => panic!("unexpected id type {t}"),
        }
    }

    /// A list entry as read back or expected: (item id, score, rank).
    type Entry = (String, f32, i32);
    /// A nested row as read back or expected: (user id, entries, cluster, source).
    type NestedRow = (String, Vec<Entry>, Option<i32>, String);

    fn expected_nested<I: TestId + ToString>(rows: &[Row<I>]) -> Vec<NestedRow> {
        rows.iter()
            .map(|(user, cluster, source, list)| {
                let entries = (1..).zip(list).map(|(r, (i, s))| (i.to_string(), *s, r)).collect();
                (user.to_string(), entries, cluster.map(|c| c as i32), source.as_str().to_string())
            })
            .collect()
    }

    fn read_nested(path: &Path, users: &Ids, items: &Ids) -> Vec<NestedRow> {
        let (batches, _) = read(path);
        let mut out = Vec::new();
        for batch in batches {
            assert_eq!(batch.schema(), recommendations_schema(users, items, Layout::Nested));
            let user_ids = id_strings(batch.column(0).as_ref());
            let lists = batch.column(1).as_list::<i32>();
            let clusters = batch.column(2).as_primitive::<Int32Type>();
            let sources = batch.column(3).as_string::<i32>();
            for (r, user_id) in user_ids.into_iter().enumerate() {
                let entries = lists.value(r);
                let entries = entries.as_struct();
                let item_ids = id_strings(entries.column(0).as_ref());
                let scores = entries.column(1).as_primitive::<Float32Type>().values();
                let ranks = entries.column(2).as_primitive::<Int32Type>().values();
                let list = (0..entries.len()).map(|e| (item_ids[e].clone(), scores[e], ranks[e])).collect();
                let cluster = clusters.is_valid(r).then(|| clusters.value(r));
                out.push((user_id, list, cluster, sources.value(r).to_string()));
            }
        }
        out
    }

    /// Flat rows read back: (user id, rank, item id, score).
    fn read_flat(path: &Path, users: &Ids, items: &Ids) -> Vec<(String, i32, String, f32)> {
        let (batches, _) = read(path);
        let mut out = Vec::new();
        for batch in batches {
            assert_eq!(batch.schema(), recommendations_schema(users, items, Layout::Flat));
            let user_ids = id_strings(batch.column(0).as_ref());
            let ranks = batch.column(1).as_primitive::<Int32Type>().values();
            let item_ids = id_strings(batch.column(2).as_ref());
            let scores = batch.column(3).as_primitive::<Float32Type>().values();
            for r in 0..batch.num_rows() {
                out.push((user_ids[r].clone(), ranks[r], item_ids[r].clone(), scores[r]));
            }
        }
        out
    }

    fn expected_flat<I: TestId + ToString>(rows: &[Row<I>]) -> Vec<(String, i32, String, f32)> {
        expected_nested(rows)
            .into_iter()
            .flat_map(|(u, list, _, _)| list.into_iter().map(move |(i, s, r)| (u.clone(), r, i, s)))
            .collect()
    }

    fn round_trip<I: TestId + ToString>(rows: &[Row<I>], extra_items: &[I]) {
        let dir = tempfile::tempdir().unwrap();
        let (users, items, recs) = inputs(rows, extra_items);
        let nested = dir.path().join("nested.parquet");
        let n = write_recommendations(&nested, &users, &items, &recs, Layout::Nested, ROW_GROUP_ROWS_TEST).unwrap();
        assert_eq!(n, rows.len() as u64);
        assert_eq!(read_nested(&nested, &users, &items), expected_nested(rows));
        let flat = dir.path().join("flat.parquet");
        let n = write_recommendations(&flat, &users, &items, &recs, Layout::Flat, ROW_GROUP_ROWS_TEST).unwrap();
        let expected = expected_flat(rows);
        assert_eq!(n, expected.len() as u64);
        assert_eq!(read_flat(&flat, &users, &items), expected);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temporary files left: {names:?}");
    }

    /// Small enough that the test inputs span several row groups.
    const ROW_GROUP_ROWS_TEST: usize = 2;

    #[test]
    fn round_trip_int_ids_both_layouts() {
        round_trip(&int_rows(), &[55]);
    }

    #[test]
    fn round_trip_string_ids_both_layouts() {
        round_trip(&str_rows(), &["never-recommended".to_string()]);
    }

    #[test]
    fn round_trip_mixed_id_types() {
        let dir = tempfile::tempdir().unwrap();
        let users = Ids::from_strings(vec!["u1".into(), "u2".into()]);
        let items = Ids::from_int(vec![5, 9]);
        let recs = vec![
            UserTopK { items: vec![1, 0], scores: vec![2.0, 1.0], cluster: None, source: Source::Fallback },
            UserTopK { items: vec![0], scores: vec![0.5], cluster: Some(4), source: Source::Personalized },
        ];
        let p = dir.path().join("r.parquet");
        write_recommendations(&p, &users, &items, &recs, Layout::Nested, 10).unwrap();
        let s = |x: &str| x.to_string();
        assert_eq!(
            read_nested(&p, &users, &items),
            vec![
                (s("u1"), vec![(s("9"), 2.0, 1), (s("5"), 1.0, 2)], None, s("fallback")),
                (s("u2"), vec![(s("5"), 0.5, 1)], Some(4), s("personalized")),
            ]
        );
    }

    fn ten_users() -> (Ids, Ids, Vec<UserTopK>) {
        let users = Ids::from_int((0..10).collect());
        let items = Ids::from_int((0..5).map(|i| i * 10).collect());
        let recs = (0..10u32)
            .map(|u| UserTopK {
                items: vec![u % 5, (u + 1) % 5],
                scores: vec![u as f32, u as f32 / 2.0],
                cluster: Some(u % 3),
                source: Source::Personalized,
            })
            .collect();
        (users, items, recs)
    }

    fn row_group_sizes(path: &Path) -> Vec<i64> {
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
        builder.metadata().row_groups().iter().map(|g| g.num_rows()).collect()
    }

    #[test]
    fn row_groups_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (users, items, recs) = ten_users();
        let nested = dir.path().join("nested.parquet");
        assert_eq!(write_recommendations(&nested, &users, &items, &recs, Layout::Nested, 3).unwrap(), 10);
        let (_, groups) = read(&nested);
        assert_eq!(groups, 4);
        assert_eq!(row_group_sizes(&nested), vec![3, 3, 3, 1]);
        let flat = dir.path().join("flat.parquet");
        assert_eq!(write_recommendations(&flat, &users, &items, &recs, Layout::Flat, 3).unwrap(), 20);
        assert_eq!(row_group_sizes(&flat), vec![3, 3, 3, 3, 3, 3, 2]);
        // zstd is used.
        let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(&flat).unwrap()).unwrap();
        let compression = builder.metadata().row_group(0).column(0).compression();
        assert!(matches!(compression, parquet::basic::Compression::ZSTD(_)), "{compression:?}");
    }

    #[test]
    fn a_user_with_an_empty_list_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let users = Ids::from_int(vec![1, 2]);
        let items = Ids::from_int(vec![7]);
        let recs = vec![
            UserTopK { items: vec![], scores: vec![], cluster: Some(1), source: Source::Personalized },
            UserTopK { items: vec![0], scores: vec![0.5], cluster: Some(1), source: Source::Personalized },
        ];
        let nested = dir.path().join("nested.parquet");
        assert_eq!(write_recommendations(&nested, &users, &items, &recs, Layout::Nested, 10).unwrap(), 2);
        let got = read_nested(&nested, &users, &items);
        assert_eq!(got[0], ("1".to_string(), vec![], Some(1), "personalized".to_string()));
        assert_eq!(got[1].1, vec![("7".to_string(), 0.5, 1)]);
        let flat = dir.path().join("flat.parquet");
        assert_eq!(write_recommendations(&flat, &users, &items, &recs, Layout::Flat, 10).unwrap(), 1);
        assert_eq!(read_flat(&flat, &users, &items), vec![("2".to_string(), 1, "7".to_string(), 0.5)]);
        // Nobody has a list: the flat file has the schema and no rows.
        let empty = vec![recs[0].clone(), recs[0].clone()];
        assert_eq!(write_recommendations(&flat, &users, &items, &empty, Layout::Flat, 10).unwrap(), 0);
        assert_eq!(read_flat(&flat, &users, &items), vec![]);
        let (_, groups) = read(&flat);
        assert_eq!(groups, 0);
    }

    #[test]
    fn bad_inputs_are_rejected_and_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.parquet");
        let users = Ids::from_int(vec![1, 2]);
        let items = Ids::from_int(vec![7]);
        let ok = UserTopK { items: vec![0], scores: vec![0.5], cluster: None, source: Source::Fallback };
        let cases = [
            (vec![ok.clone()], 10, "1 recommendation lists for 2 users"),
            (
                vec![ok.clone(), UserTopK { items: vec![1], ..ok.clone() }],
                10,
                "user 2: internal item id 1 out of range",
            ),
            (vec![ok.clone(), UserTopK { scores: vec![], ..ok.clone() }], 10, "user 2: 1 items but 0 scores"),
            (vec![ok.clone(), UserTopK { cluster: Some(u32::MAX), ..ok.clone() }], 10, "does not fit Int32"),
            (vec![ok.clone(), ok.clone()], 0, "row_group_rows must be at least 1"),
        ];
        for layout in [Layout::Nested, Layout::Flat] {
            for (recs, rows, message) in &cases {
                let err = write_recommendations(&p, &users, &items, recs, layout, *rows).unwrap_err();
                let text = format!("{err:#}");
                assert!(text.contains(message), "{text}");
                assert!(text.contains("r.parquet"), "the error names the file: {text}");
                assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "{text}");
            }
        }
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    #[test]
    fn commit_publishes_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("store/runs");
        let (users, items, recs) = ten_users();
        let run = RunWriter::begin(&runs, "2024-05-01").unwrap();
        assert_eq!(entries(&runs), vec![format!(".2024-05-01.tmp-{}", std::process::id())]);
        assert!(!run_complete(&runs, "2024-05-01"));
        write_recommendations(&run.path(RECOMMENDATIONS_FILE), &users, &items, &recs, Layout::Nested, 4).unwrap();
        fs::write(run.path("extra.txt"), "x").unwrap();
        let final_dir = run.commit(&json!({"run_id": "2024-05-01", "users": 10})).unwrap();
        assert_eq!(final_dir, runs.join("2024-05-01"));
        assert_eq!(entries(&runs), vec!["2024-05-01"]);
        assert_eq!(entries(&final_dir), vec![SUCCESS_FILE, "extra.txt", MANIFEST_FILE, RECOMMENDATIONS_FILE]);
        assert!(run_complete(&runs, "2024-05-01"));
        assert_eq!(fs::read(final_dir.join(SUCCESS_FILE)).unwrap(), b"");
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(final_dir.join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(manifest, json!({"run_id": "2024-05-01", "users": 10}));
        assert!(fs::read_to_string(final_dir.join(MANIFEST_FILE)).unwrap().contains("\n  \"users\": 10"));
        assert_eq!(read_nested(&final_dir.join(RECOMMENDATIONS_FILE), &users, &items).len(), 10);
    }

    #[test]
    fn a_dropped_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        {
            let run = RunWriter::begin(&runs, "r1").unwrap();
            fs::write(run.path("part.parquet"), "partial").unwrap();
        }
        assert_eq!(entries(&runs), Vec::<String>::new());
        assert!(!run_complete(&runs, "r1"));
    }

    #[test]
    fn commit_onto_an_existing_run_fails() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        // Begin refuses a run id that is already published.
        RunWriter::begin(&runs, "r1").unwrap().commit(&json!({})).unwrap();
        let err = RunWriter::begin(&runs, "r1").unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        // A folder appearing while the run is written (even an empty one) makes commit fail.
        let run = RunWriter::begin(&runs, "r2").unwrap();
        fs::create_dir(runs.join("r2")).unwrap();
        let err = run.commit(&json!({})).unwrap_err();
        assert!(format!("{err:#}").contains("already exists"), "{err:#}");
        assert_eq!(entries(&runs), vec!["r1", "r2"]);
        assert_eq!(entries(&runs.join("r2")), Vec::<String>::new());
        assert!(!run_complete(&runs, "r2"));
    }

    #[test]
    fn begin_removes_a_stale_temporary_folder_and_rejects_bad_ids() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        // A pid that cannot be running (above the Linux maximum of 2^22).
        let stale = runs.join(temp_dir_name("r1", 4_194_304 + 17));
        fs::create_dir_all(stale.join("sub")).unwrap();
        let other = runs.join(temp_dir_name("r10", 4_194_304 + 17));
        fs::create_dir_all(&other).unwrap();
        let run = RunWriter::begin(&runs, "r1").unwrap();
        assert!(!stale.exists());
        assert!(other.exists(), "another run id's folder is left alone");
        run.commit(&json!({})).unwrap();
        for bad in ["", ".hidden", "a/b", ".."] {
            assert!(RunWriter::begin(&runs, bad).is_err(), "{bad:?}");
        }
    }

    // ---- the pyarrow check (tests/check_output.py) ----

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    /// `$EEMU_PYTHON`, else `<workspace>/.venv/bin/python`; fails (never skips) without one.
    fn python() -> PathBuf {
        if let Some(p) = std::env::var_os("EEMU_PYTHON") {
            return PathBuf::from(p);
        }
        let venv = workspace_root().join(".venv/bin/python");
        assert!(
            venv.exists(),
            "no Python with pyarrow for the output check: {} is missing; run `make setup` (or set EEMU_PYTHON)",
            venv.display()
        );
        venv
    }

    /// Runs the check script; returns (success, stdout + stderr).
    fn run_check(run_dir: &Path, expect: &serde_json::Value) -> (bool, String) {
        let expect_path = run_dir.with_extension("expect.json");
        fs::write(&expect_path, serde_json::to_vec_pretty(expect).unwrap()).unwrap();
        let script = workspace_root().join("tests/check_output.py");
        let python = python();
        let out =
            Command::new(&python).arg(&script).arg(run_dir).arg(&expect_path).output().unwrap_or_else(|e| {
                panic!("cannot run {}: {e}; run `make setup` (or set EEMU_PYTHON)", python.display())
            });
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    }

    /// The expected JSON, built from the test rows (not from the written file).
    fn expect_json<I: TestId>(rows: &[Row<I>], id_type: &str) -> serde_json::Value {
        let rows: Vec<_> = rows
            .iter()
            .map(|(user, cluster, source, list)| {
                let items: Vec<_> = (1..).zip(list).map(|(r, (i, s))| json!([i.json(), s, r])).collect();
                json!({"user_id": user.json(), "items": items, "cluster": cluster, "source": source})
            })
            .collect();
        json!({"user_id_type": id_type, "item_id_type": id_type, "rows": rows})
    }

    fn write_run<I: TestId>(runs: &Path, run_id: &str, rows: &[Row<I>], layout: Layout) -> PathBuf {
        let (users, items, recs) = inputs(rows, &[]);
        let run = RunWriter::begin(runs, run_id).unwrap();
        write_recommendations(&run.path(RECOMMENDATIONS_FILE), &users, &items, &recs, layout, 3).unwrap();
        run.commit(&json!({"run_id": run_id, "layout": layout})).unwrap()
    }

    #[test]
    fn pyarrow_reads_the_runs_as_expected() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let cases = [
            (write_run(&runs, "int-nested", &int_rows(), Layout::Nested), expect_json(&int_rows(), "int64")),
            (write_run(&runs, "int-flat", &int_rows(), Layout::Flat), expect_json(&int_rows(), "int64")),
            (write_run(&runs, "str-nested", &str_rows(), Layout::Nested), expect_json(&str_rows(), "string")),
            (write_run(&runs, "str-flat", &str_rows(), Layout::Flat), expect_json(&str_rows(), "string")),
        ];
        for (run_dir, expect) in &cases {
            let (ok, text) = run_check(run_dir, expect);
            assert!(ok, "check_output.py failed on {}:\n{text}", run_dir.display());
            eprintln!("{text}");
        }

        // The check catches mismatches: a score off by 1e-3, a wrong cluster, a wrong id type,
        // a missing _SUCCESS.
        let (run_dir, expect) = &cases[0];
        let mut bad = expect.clone();
        bad["rows"][0]["items"][1][1] = json!(0.501);
        let (ok, text) = run_check(run_dir, &bad);
        assert!(!ok && text.contains("MISMATCH") && text.contains("score"), "{text}");
        let mut bad = expect.clone();
        bad["rows"][1]["cluster"] = json!(0);
        let (ok, text) = run_check(run_dir, &bad);
        assert!(!ok && text.contains("cluster"), "{text}");
        let mut bad = expect.clone();
        bad["user_id_type"] = json!("string");
        let (ok, text) = run_check(run_dir, &bad);
        assert!(!ok && text.contains("user_id"), "{text}");
        let (run_dir, expect) = &cases[3];
        fs::remove_file(run_dir.join(SUCCESS_FILE)).unwrap();
        let (ok, text) = run_check(run_dir, expect);
        assert!(!ok && text.contains("_SUCCESS missing"), "{text}");
    }
}
