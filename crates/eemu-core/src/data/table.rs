//! Generic tables: CSV (UTF-8, header row, configurable delimiter) and Parquet, read column by
//! column into typed vectors. Every conversion error names the file, the line (CSV) or row
//! (Parquet), and the column.
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float32Type, Int64Type};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;

use crate::config::IdType;
use crate::error::{EemuError, Location};

/// Original ids as read from one column.
#[derive(Debug, Clone, PartialEq)]
pub enum RawIds {
    Int(Vec<i64>),
    Str(Vec<String>),
}

enum Cells {
    /// CSV fields, as text.
    Text(Vec<String>),
    /// A Parquet column.
    Arrow(ArrayRef),
}

/// The needed columns of one input file.
pub struct Table {
    file: String,
    columns: HashMap<String, Cells>,
    /// 1-based line of each CSV row; `None` for Parquet (rows are 0-based indices).
    lines: Option<Vec<usize>>,
    rows: usize,
}

/// True when the path names a Parquet file (by extension).
pub fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e.eq_ignore_ascii_case("pq"))
}

impl Table {
    /// Reads `columns` (which must all exist) from a CSV or Parquet file.
    pub fn read(path: &Path, columns: &[&str], delimiter: u8) -> Result<Table> {
        if is_parquet(path) {
            Self::read_parquet(path, columns)
        } else {
            Self::read_csv(path, columns, delimiter)
        }
    }

    /// The column names of a CSV header or a Parquet schema.
    pub fn column_names(path: &Path, delimiter: u8) -> Result<Vec<String>> {
        let file = path.display().to_string();
        if is_parquet(path) {
            let handle = File::open(path).with_context(|| format!("cannot open {file}"))?;
            let builder = ParquetRecordBatchReaderBuilder::try_new(handle).map_err(|e| {
                EemuError::input(&file, Location::File, None, format!("not a readable Parquet file: {e}"))
            })?;
            return Ok(builder.schema().fields().iter().map(|f| f.name().clone()).collect());
        }
        let handle = File::open(path).with_context(|| format!("cannot open {file}"))?;
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).from_reader(handle);
        let header = reader.headers().map_err(|e| csv_error(&file, e))?;
        Ok(header.iter().map(|h| h.trim().to_string()).collect())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Where a data row sits, for messages: `file:line` (CSV) or `file row n` (Parquet).
    pub fn at(&self, row: usize) -> String {
        match &self.lines {
            Some(lines) => format!("{}{}", self.file, Location::Line(lines[row])),
            None => format!("{}{}", self.file, Location::Row(row)),
        }
    }

    /// An input error at a data row of this table.
    pub fn error(&self, row: usize, column: &str, message: impl Into<String>) -> anyhow::Error {
        let location = match &self.lines {
            Some(lines) => Location::Line(lines[row]),
            None => Location::Row(row),
        };
        EemuError::input(&self.file, location, Some(column), message).into()
    }

    fn read_csv(path: &Path, columns: &[&str], delimiter: u8) -> Result<Table> {
        let file = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {file}"))?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(EemuError::input(&file, Location::File, None, "file is empty").into());
        }
        let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).has_headers(true).from_reader(bytes.as_slice());
        let header = reader.headers().map_err(|e| csv_error(&file, e))?.clone();
        let names: Vec<&str> = header.iter().map(str::trim).collect();
        for (i, name) in names.iter().enumerate() {
            if names[..i].contains(name) {
                return Err(
                    EemuError::input(&file, Location::Line(1), Some(name), "duplicate column in the header").into()
                );
            }
        }
        let mut index = Vec::with_capacity(columns.len());
        for &column in columns {
            match names.iter().position(|n| *n == column) {
                Some(i) => index.push(i),
                None => return Err(missing_column(&file, column, &names, delimiter)),
            }
        }
        let mut cells: Vec<Vec<String>> = vec![Vec::new(); columns.len()];
        let mut lines = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| csv_error(&file, e))?;
            lines.push(record.position().map(|p| p.line() as usize).unwrap_or(0));
            for (c, &i) in index.iter().enumerate() {
                cells[c].push(record[i].trim().to_string());
            }
        }
        if lines.is_empty() {
            return Err(EemuError::input(&file, Location::File, None, "file has a header but no rows").into());
        }
        let rows = lines.len();
        let columns = columns.iter().map(|c| c.to_string()).zip(cells.into_iter().map(Cells::Text)).collect();
        Ok(Table { file, columns, lines: Some(lines), rows })
    }

    fn read_parquet(path: &Path, columns: &[&str]) -> Result<Table> {
        let file = path.display().to_string();
        let handle = File::open(path).with_context(|| format!("cannot open {file}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
            .map_err(|e| EemuError::input(&file, Location::File, None, format!("not a readable Parquet file: {e}")))?;
        let fields = builder.schema().fields().clone();
        let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
        let mut index = Vec::with_capacity(columns.len());
        for &column in columns {
            let found: Vec<usize> = names.iter().enumerate().filter(|(_, n)| **n == column).map(|(i, _)| i).collect();
            match found.as_slice() {
                [i] => index.push(*i),
                [] => return Err(missing_column(&file, column, &names, b',')),
                _ => {
                    return Err(
                        EemuError::input(&file, Location::File, Some(column), "duplicate column in the schema").into()
                    )
                }
            }
        }
        let mask = ProjectionMask::roots(builder.parquet_schema(), index.iter().copied());
        let reader = builder.with_projection(mask).build().with_context(|| format!("cannot read {file}"))?;
        let mut batches = Vec::new();
        for batch in reader {
            batches.push(batch.with_context(|| format!("cannot decode {file}"))?);
        }
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Err(EemuError::input(&file, Location::File, None, "file has no rows").into());
        }
        let mut out = HashMap::new();
        for &column in columns {
            let parts: Vec<&dyn Array> =
                batches.iter().map(|b| b.column_by_name(column).expect("projected column").as_ref()).collect();
            let array = arrow::compute::concat(&parts).with_context(|| format!("{file}: column '{column}'"))?;
            out.insert(column.to_string(), Cells::Arrow(array));
        }
        Ok(Table { file, columns: out, lines: None, rows })
    }

    fn cells(&self, column: &str) -> &Cells {
        self.columns.get(column).expect("only columns passed to Table::read are asked for")
    }

    /// Fails on a null value of a Parquet column.
    fn no_nulls(&self, array: &dyn Array, column: &str) -> Result<()> {
        match (0..array.len()).find(|&i| array.is_null(i)) {
            Some(row) => Err(self.error(row, column, "value is missing (null)")),
            None => Ok(()),
        }
    }

    /// Casts a Parquet column, pointing at the first value that does not convert.
    fn cast(&self, array: &ArrayRef, to: &DataType, column: &str, expected: &str) -> Result<ArrayRef> {
        self.no_nulls(array, column)?;
        let out = cast(array, to)
            .map_err(|_| self.error(0, column, format!("expected {expected}, found {}", array.data_type())))?;
        if let Some(row) = (0..out.len()).find(|&i| out.is_null(i)) {
            return Err(self.error(row, column, format!("expected {expected}")));
        }
        Ok(out)
    }

    /// An id column, as integers or strings according to `id_type` (`auto`: integers when all parse).
    pub fn ids(&self, column: &str, id_type: IdType) -> Result<RawIds> {
        match self.cells(column) {
            Cells::Text(values) => {
                if let Some(row) = values.iter().position(String::is_empty) {
                    return Err(self.error(row, column, "id is empty"));
                }
                match id_type {
                    IdType::String => Ok(RawIds::Str(values.clone())),
                    IdType::Int => self.parse_all(values, column, "an integer id").map(RawIds::Int),
                    IdType::Auto => match values.iter().map(|v| v.parse::<i64>()).collect::<Result<Vec<_>, _>>() {
                        Ok(ints) => Ok(RawIds::Int(ints)),
                        Err(_) => Ok(RawIds::Str(values.clone())),
                    },
                }
            }
            Cells::Arrow(array) => {
                let is_int = array.data_type().is_integer();
                let is_text = matches!(array.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
                match (id_type, is_int, is_text) {
                    (IdType::Auto | IdType::Int, true, _) => {
                        let a = self.cast(array, &DataType::Int64, column, "an integer id")?;
                        Ok(RawIds::Int(a.as_primitive::<Int64Type>().values().to_vec()))
                    }
                    (IdType::Int, false, true) => {
                        let a = self.cast(array, &DataType::Int64, column, "an integer id")?;
                        Ok(RawIds::Int(a.as_primitive::<Int64Type>().values().to_vec()))
                    }
                    (IdType::Auto | IdType::String, _, true) | (IdType::String, true, _) => {
                        let a = self.cast(array, &DataType::Utf8, column, "a string id")?;
                        let a = a.as_string::<i32>();
                        if let Some(row) = (0..a.len()).find(|&i| a.value(i).is_empty()) {
                            return Err(self.error(row, column, "id is empty"));
                        }
                        Ok(RawIds::Str((0..a.len()).map(|i| a.value(i).to_string()).collect()))
                    }
                    _ => Err(self.error(
                        0,
                        column,
                        format!("expected integer or string ids, found {}", array.data_type()),
                    )),
                }
            }
        }
    }

    fn parse_all<T: std::str::FromStr>(&self, values: &[String], column: &str, expected: &str) -> Result<Vec<T>> {
        values
            .iter()
            .enumerate()
            .map(|(row, v)| {
                v.parse::<T>().map_err(|_| self.error(row, column, format!("expected {expected}, found {v:?}")))
            })
            .collect()
    }

    /// An integer column (timestamps).
    pub fn i64s(&self, column: &str) -> Result<Vec<i64>> {
        match self.cells(column) {
            Cells::Text(values) => self.parse_all(values, column, "an integer"),
            Cells::Arrow(array) => {
                let a = self.cast(array, &DataType::Int64, column, "an integer")?;
                Ok(a.as_primitive::<Int64Type>().values().to_vec())
            }
        }
    }

    /// A float column (weights); values must be finite.
    pub fn f32s(&self, column: &str) -> Result<Vec<f32>> {
        let values = match self.cells(column) {
            Cells::Text(values) => self.parse_all::<f32>(values, column, "a number")?,
            Cells::Arrow(array) => {
                let a = self.cast(array, &DataType::Float32, column, "a number")?;
                a.as_primitive::<Float32Type>().values().to_vec()
            }
        };
        match values.iter().position(|v| !v.is_finite()) {
            Some(row) => Err(self.error(row, column, "expected a finite number")),
            None => Ok(values),
        }
    }

    /// A categorical column: one label per row (empty = its own label).
    pub fn labels(&self, column: &str) -> Result<Vec<String>> {
        match self.cells(column) {
            Cells::Text(values) => Ok(values.clone()),
            Cells::Arrow(array) => {
                let a = cast(array, &DataType::Utf8).map_err(|_| {
                    self.error(0, column, format!("expected a categorical value, found {}", array.data_type()))
                })?;
                let a = a.as_string::<i32>();
                Ok((0..a.len()).map(|i| if a.is_null(i) { String::new() } else { a.value(i).to_string() }).collect())
            }
        }
    }

    /// A multi-hot column: a set of labels per row (CSV: joined by `separator`; Parquet: a list).
    pub fn label_sets(&self, column: &str, separator: &str) -> Result<Vec<Vec<String>>> {
        let split = |v: &str| -> Vec<String> {
            v.split(separator).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
        };
        match self.cells(column) {
            Cells::Text(values) => Ok(values.iter().map(|v| split(v)).collect()),
            Cells::Arrow(array) => match array.data_type() {
                DataType::List(_) | DataType::LargeList(_) => {
                    let list = cast(
                        array,
                        &DataType::List(Arc::new(arrow::datatypes::Field::new("item", DataType::Utf8, true))),
                    )
                    .map_err(|_| {
                        self.error(0, column, format!("expected a list of labels, found {}", array.data_type()))
                    })?;
                    let list = list.as_list::<i32>();
                    Ok((0..list.len())
                        .map(|i| {
                            if list.is_null(i) {
                                return vec![];
                            }
                            let v = list.value(i);
                            let s = v.as_string::<i32>();
                            (0..s.len()).filter(|&j| !s.is_null(j)).map(|j| s.value(j).to_string()).collect()
                        })
                        .collect())
                }
                _ => Ok(self.labels(column)?.iter().map(|v| split(v)).collect()),
            },
        }
    }

    /// A dense column: `dim` floats per row, row-major (CSV: joined by `separator`; Parquet: a
    /// fixed-size list or list of numbers).
    pub fn dense(&self, column: &str, dim: usize, separator: &str) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(self.rows * dim);
        match self.cells(column) {
            Cells::Text(values) => {
                for (row, v) in values.iter().enumerate() {
                    let parts: Vec<&str> = if v.is_empty() { vec![] } else { v.split(separator).collect() };
                    if parts.len() != dim {
                        return Err(self.error(
                            row,
                            column,
                            format!("expected {dim} numbers separated by {separator:?}, found {}", parts.len()),
                        ));
                    }
                    for p in parts {
                        let x: f32 = p
                            .trim()
                            .parse()
                            .map_err(|_| self.error(row, column, format!("expected a number, found {p:?}")))?;
                        out.push(x);
                    }
                }
            }
            Cells::Arrow(array) => {
                self.no_nulls(array, column)?;
                let as_list = DataType::List(Arc::new(arrow::datatypes::Field::new("item", DataType::Float32, true)));
                let list = cast(array, &as_list).map_err(|_| {
                    self.error(0, column, format!("expected a list of numbers, found {}", array.data_type()))
                })?;
                let list = list.as_list::<i32>();
                for row in 0..list.len() {
                    let v = list.value(row);
                    let v = v.as_primitive::<Float32Type>();
                    if v.len() != dim || v.null_count() > 0 {
                        return Err(self.error(
                            row,
                            column,
                            format!("expected {dim} numbers, found {}", v.len() - v.null_count()),
                        ));
                    }
                    out.extend_from_slice(v.values());
                }
            }
        }
        match out.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(self.error(i / dim, column, "expected finite numbers")),
            None => Ok(out),
        }
    }
}

fn missing_column(file: &str, column: &str, names: &[&str], delimiter: u8) -> anyhow::Error {
    let mut message =
        format!("column is missing (found: {})", names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", "));
    if names.len() == 1 {
        if let Some(d) = [b',', b'\t', b';', b'|'].iter().find(|&&d| d != delimiter && names[0].contains(d as char)) {
            message.push_str(&format!("; the header looks separated by {:?}, not {:?}", *d as char, delimiter as char));
        }
    }
    EemuError::input(file, Location::Line(1), Some(column), message).into()
}

fn csv_error(file: &str, e: csv::Error) -> anyhow::Error {
    let line = e.position().map(|p| p.line() as usize);
    let location = line.map(Location::Line).unwrap_or(Location::File);
    let message = match e.kind() {
        csv::ErrorKind::Utf8 { .. } => "not valid UTF-8".to_string(),
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("expected {expected_len} fields like the header, found {len}")
        }
        _ => e.to_string(),
    };
    EemuError::input(file, location, None, message).into()
}
