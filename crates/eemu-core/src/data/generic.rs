//! Generic inputs: an interactions table (CSV or Parquet) with configurable column names, plus
//! optional user and item feature tables whose columns are declared in the config. Ids are
//! integers or strings; a feature table, when given, is the catalog: every id in the
//! interactions must appear in it.
use std::path::Path;

use anyhow::{bail, Result};

use super::table::{is_parquet, RawIds, Table};
use super::{Dataset, Entities, Feature, FeatureValues, Ids, Interactions};
use crate::config::{FeatureDecl, FeatureKindDecl, IdType, IngestConfig};
use crate::error::{EemuError, Location};

/// Paths of a generic input.
pub struct GenericInputs<'a> {
    pub interactions: &'a Path,
    pub users: Option<&'a Path>,
    pub items: Option<&'a Path>,
}

/// Reads a generic dataset.
pub fn read(inputs: &GenericInputs, config: &IngestConfig) -> Result<Dataset> {
    let delimiter = config.delimiter.as_bytes()[0];
    let mut columns = vec![config.user_column.as_str(), config.item_column.as_str()];
    if !config.timestamp_column.is_empty() {
        columns.push(&config.timestamp_column);
    }
    if !config.weight_column.is_empty() {
        columns.push(&config.weight_column);
    }
    let table = Table::read(inputs.interactions, &columns, delimiter)?;
    let raw_users = table.ids(&config.user_column, config.id_type)?;
    let raw_items = table.ids(&config.item_column, config.id_type)?;
    let users = entities(inputs.users, Side::Users, &raw_users, config)?;
    let items = entities(inputs.items, Side::Items, &raw_items, config)?;
    let interactions = Interactions {
        user: internal(&table, &config.user_column, &raw_users, &users.ids)?,
        item: internal(&table, &config.item_column, &raw_items, &items.ids)?,
        timestamp: match config.timestamp_column.as_str() {
            "" => None,
            c => Some(table.i64s(c)?),
        },
        weight: match config.weight_column.as_str() {
            "" => None,
            c => Some(table.f32s(c)?),
        },
    };
    let format = if is_parquet(inputs.interactions) { "parquet" } else { "csv" };
    Ok(Dataset { format: format.into(), users, items, interactions })
}

/// Which entities a feature table describes: users (`--users`) or items (`--items`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Users,
    Items,
}

impl Side {
    fn plural(self) -> &'static str {
        match self {
            Side::Users => "users",
            Side::Items => "items",
        }
    }

    fn singular(self) -> &'static str {
        match self {
            Side::Users => "user",
            Side::Items => "item",
        }
    }

    fn id_column(self, config: &IngestConfig) -> &str {
        match self {
            Side::Users => &config.user_id_column,
            Side::Items => &config.item_id_column,
        }
    }

    fn decls(self, config: &IngestConfig) -> &[FeatureDecl] {
        match self {
            Side::Users => &config.user_features,
            Side::Items => &config.item_features,
        }
    }

    /// Declared features need a table to read them from.
    fn check_no_table(self, config: &IngestConfig) -> Result<()> {
        let n = self.decls(config).len();
        if n > 0 {
            bail!(
                "ingest.{}_features declares {n} feature(s) but no --{} file was given",
                self.singular(),
                self.plural()
            );
        }
        Ok(())
    }
}

/// The id type a feature table must use to match the interactions.
fn matching_type(raw: &RawIds) -> IdType {
    match raw {
        RawIds::Int(_) => IdType::Int,
        RawIds::Str(_) => IdType::String,
    }
}

/// Users or items: from their feature table when given, else the distinct ids of the interactions.
fn entities(path: Option<&Path>, side: Side, raw: &RawIds, config: &IngestConfig) -> Result<Entities> {
    let Some(path) = path else {
        side.check_no_table(config)?;
        let ids = match raw {
            RawIds::Int(v) => Ids::from_int(v.clone()),
            RawIds::Str(v) => Ids::from_strings(v.clone()),
        };
        return Ok(Entities { ids, features: vec![] });
    };
    let (_, _, entities) = read_table(path, side, matching_type(raw), config)?;
    Ok(entities)
}

/// Reads a feature table: the table, the permutation that sorts its rows by id, and the
/// entities in id order.
fn read_table(
    path: &Path,
    side: Side,
    id_type: IdType,
    config: &IngestConfig,
) -> Result<(Table, Vec<usize>, Entities)> {
    let (id_column, decls) = (side.id_column(config), side.decls(config));
    let mut columns = vec![id_column];
    columns.extend(decls.iter().map(FeatureDecl::column));
    let table = Table::read(path, &columns, config.delimiter.as_bytes()[0])?;
    let table_ids = table.ids(id_column, id_type)?;
    // Sort the table rows by id; reject duplicates.
    let n = table.rows();
    let mut order: Vec<usize> = (0..n).collect();
    let ids = match &table_ids {
        RawIds::Int(v) => {
            order.sort_by_key(|&r| v[r]);
            if let Some(w) = order.windows(2).find(|w| v[w[0]] == v[w[1]]) {
                return Err(table.error(w[1], id_column, format!("duplicate id {}", v[w[1]])));
            }
            Ids::Int(order.iter().map(|&r| v[r]).collect())
        }
        RawIds::Str(v) => {
            order.sort_by(|&a, &b| v[a].cmp(&v[b]));
            if let Some(w) = order.windows(2).find(|w| v[w[0]] == v[w[1]]) {
                return Err(table.error(w[1], id_column, format!("duplicate id {:?}", v[w[1]])));
            }
            Ids::Str(order.iter().map(|&r| v[r].clone()).collect())
        }
    };
    let mut features = Vec::with_capacity(decls.len());
    for decl in decls {
        let column = decl.column();
        let feature = match decl.kind {
            FeatureKindDecl::Categorical => {
                let labels = table.labels(column)?;
                Feature::categorical(&decl.name, &permute(&labels, &order))
            }
            FeatureKindDecl::MultiHot => {
                let sets = table.label_sets(column, &config.list_separator)?;
                Feature::multi_hot(&decl.name, &permute(&sets, &order))
            }
            FeatureKindDecl::Dense => {
                let dim = decl.dim.expect("validated: dense features have a dim");
                let values = table.dense(column, dim, &config.dense_separator)?;
                let sorted = order.iter().flat_map(|&r| values[r * dim..(r + 1) * dim].iter().copied()).collect();
                Feature { name: decl.name.clone(), values: FeatureValues::Dense { dim, values: sorted } }
            }
        };
        features.push(feature);
    }
    Ok((table, order, Entities { ids, features }))
}

/// Adds the features that `side` declares, read from the feature table at `path`, to entities
/// that another reader produced (a MovieLens folder's users or items). The table must hold one
/// row for every entity and no other rows; its feature names must be new.
pub fn add_features(entities: &mut Entities, path: Option<&Path>, side: Side, config: &IngestConfig) -> Result<()> {
    let (what, singular, id_column) = (side.plural(), side.singular(), side.id_column(config));
    let Some(path) = path else {
        return side.check_no_table(config);
    };
    if side.decls(config).is_empty() {
        bail!("--{what} {}: ingest.{singular}_features declares no feature to read from it", path.display());
    }
    for decl in side.decls(config) {
        if entities.features.iter().any(|f| f.name == decl.name) {
            bail!(
                "ingest.{singular}_features: the input's {what} already have a feature named {:?}; name it otherwise",
                decl.name
            );
        }
    }
    let id_type = match entities.ids {
        Ids::Int(_) => IdType::Int,
        Ids::Str(_) => IdType::String,
    };
    let (table, order, extra) = read_table(path, side, id_type, config)?;
    // Both id lists are sorted and free of duplicates, so the first position where they differ
    // holds the smaller id of the two, which the other list lacks.
    let (n, m) = (entities.len(), extra.len());
    let k = (0..n.min(m)).find(|&k| compare_ids(&entities.ids, k, &extra.ids, k).is_ne()).unwrap_or(n.min(m));
    if k < n && (k == m || compare_ids(&entities.ids, k, &extra.ids, k).is_lt()) {
        return Err(EemuError::input(
            path.display().to_string(),
            Location::File,
            Some(id_column),
            format!(
                "no row for {singular} {}; the table needs one row for every {singular}",
                entities.ids.display(k as u32)
            ),
        )
        .into());
    }
    if k < m {
        return Err(table.error(
            order[k],
            id_column,
            format!("{singular} {} is not in the input's {what}", extra.ids.display(k as u32)),
        ));
    }
    entities.features.extend(extra.features);
    Ok(())
}

fn compare_ids(a: &Ids, i: usize, b: &Ids, j: usize) -> std::cmp::Ordering {
    match (a, b) {
        (Ids::Int(a), Ids::Int(b)) => a[i].cmp(&b[j]),
        (Ids::Str(a), Ids::Str(b)) => a[i].cmp(&b[j]),
        _ => unreachable!("the table's ids are read with the entities' id type"),
    }
}

fn permute<T: Clone>(values: &[T], order: &[usize]) -> Vec<T> {
    order.iter().map(|&i| values[i].clone()).collect()
}

/// Internal ids of the interactions' raw ids; an id missing from the catalog names its row.
fn internal(table: &Table, column: &str, raw: &RawIds, ids: &Ids) -> Result<Vec<u32>> {
    let mut out = Vec::with_capacity(table.rows());
    for row in 0..table.rows() {
        let found = match raw {
            RawIds::Int(v) => ids.find_int(v[row]),
            RawIds::Str(v) => ids.find_str(&v[row]),
        };
        match found {
            Some(i) => out.push(i),
            None => {
                let shown = match raw {
                    RawIds::Int(v) => v[row].to_string(),
                    RawIds::Str(v) => format!("{:?}", v[row]),
                };
                return Err(table.error(row, column, format!("id {shown} is not in the feature table")));
            }
        }
    }
    Ok(out)
}
