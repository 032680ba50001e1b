//! MovieLens 100K (`u.data`, `u.user`, `u.item`) and MovieLens 1M (`ratings.dat`, `users.dat`,
//! `movies.dat`) readers, with user features (age bucket, gender, occupation) and item features
//! (genres as multi-hot, release year as categorical). Every rating is an interaction (implicit
//! feedback: no rating threshold, no weight). Ages of ML-100K are put into ML-1M's seven buckets
//! (1, 18, 25, 35, 45, 50, 56) so both datasets share one feature definition. Titles are not read
//! here: the reference embeds them with a sentence model, and `scripts/title-embeddings.py` writes
//! such embeddings as a feature table that `eemu ingest --items` adds (`generic::add_features`).
use std::path::Path;

use anyhow::{Context, Result};

use super::{Dataset, Entities, Feature, Ids, Interactions};
use crate::error::{EemuError, Location};

/// Genre names of ML-100K when `u.genre` is absent (its 19 flags, in file order).
const ML100K_GENRES: [&str; 19] = [
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
];

/// A text file split into numbered lines.
struct TextFile {
    name: String,
    text: String,
}

impl TextFile {
    /// Reads a file that must be UTF-8 (ASCII in practice).
    fn utf8(path: &Path) -> Result<TextFile> {
        let bytes = read(path)?;
        let name = path.display().to_string();
        match String::from_utf8(bytes) {
            Ok(text) => Ok(TextFile { name, text }),
            Err(e) => {
                let bytes = e.as_bytes();
                let at = e.utf8_error().valid_up_to();
                let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
                Err(EemuError::input(name, Location::Line(line), None, "not valid UTF-8").into())
            }
        }
    }

    /// Reads a Latin-1 file (every byte is one character).
    fn latin1(path: &Path) -> Result<TextFile> {
        let bytes = read(path)?;
        Ok(TextFile { name: path.display().to_string(), text: bytes.iter().map(|&b| b as char).collect() })
    }

    /// Non-empty lines with their 1-based numbers; an empty file is an error.
    fn lines(&self) -> Result<Vec<(usize, &str)>> {
        let lines: Vec<(usize, &str)> = self
            .text
            .split('\n')
            .enumerate()
            .map(|(i, l)| (i + 1, l.strip_suffix('\r').unwrap_or(l)))
            .filter(|(_, l)| !l.is_empty())
            .collect();
        if lines.is_empty() {
            return Err(EemuError::input(&self.name, Location::File, None, "file is empty").into());
        }
        Ok(lines)
    }

    fn error(&self, line: usize, column: Option<&str>, message: impl Into<String>) -> anyhow::Error {
        EemuError::input(&self.name, Location::Line(line), column, message).into()
    }

    /// Splits a line into exactly `columns.len()` fields (or at least, when `at_least`).
    fn fields<'a>(
        &self,
        line: usize,
        text: &'a str,
        sep: &str,
        columns: &[&str],
        at_least: bool,
    ) -> Result<Vec<&'a str>> {
        let fields: Vec<&str> = text.split(sep).collect();
        let ok = if at_least { fields.len() >= columns.len() } else { fields.len() == columns.len() };
        if ok {
            return Ok(fields);
        }
        let hint = ["\t", "::", "|", ",", ";"]
            .iter()
            .find(|&&other| other != sep && text.split(other).count() >= columns.len())
            .map(|s| format!(" (the line looks separated by {s:?})"))
            .unwrap_or_default();
        Err(self.error(
            line,
            None,
            format!(
                "expected {} fields ({}) separated by {sep:?}, found {}{hint}",
                columns.len(),
                columns.join(", "),
                fields.len()
            ),
        ))
    }

    fn int(&self, line: usize, column: &str, text: &str) -> Result<i64> {
        text.trim()
            .parse::<i64>()
            .map_err(|_| self.error(line, Some(column), format!("expected an integer, found {text:?}")))
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Maps an original id to its internal id, or fails naming where the id came from.
fn lookup(ids: &Ids, id: i64, file: &TextFile, line: usize, column: &str, table: &str) -> Result<u32> {
    ids.find_int(id).ok_or_else(|| file.error(line, Some(column), format!("id {id} is not in {table}")))
}

/// ML-1M's age bucket of an age in years.
fn age_bucket(age: i64) -> i64 {
    match age {
        i64::MIN..=17 => 1,
        18..=24 => 18,
        25..=34 => 25,
        35..=44 => 35,
        45..=49 => 45,
        50..=55 => 50,
        _ => 56,
    }
}

/// Builds entities from rows `(id, features...)`, checking ids are unique.
struct EntityRows {
    ids: Vec<i64>,
    lines: Vec<usize>,
}

impl EntityRows {
    fn sorted_ids(&self, file: &TextFile, column: &str) -> Result<(Ids, Vec<usize>)> {
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        order.sort_by_key(|&i| self.ids[i]);
        for w in order.windows(2) {
            if self.ids[w[0]] == self.ids[w[1]] {
                return Err(file.error(self.lines[w[1]], Some(column), format!("duplicate id {}", self.ids[w[1]])));
            }
        }
        let ids = Ids::Int(order.iter().map(|&i| self.ids[i]).collect());
        Ok((ids, order))
    }
}

fn permute<T: Clone>(values: &[T], order: &[usize]) -> Vec<T> {
    order.iter().map(|&i| values[i].clone()).collect()
}

/// Reads `u.user`: `id|age|gender|occupation|zip`.
fn ml100k_users(dir: &Path) -> Result<Entities> {
    let file = TextFile::utf8(&dir.join("u.user"))?;
    let cols = ["user_id", "age", "gender", "occupation", "zip"];
    let mut rows = EntityRows { ids: vec![], lines: vec![] };
    let (mut age, mut gender, mut occupation) = (vec![], vec![], vec![]);
    for (n, line) in file.lines()? {
        let f = file.fields(n, line, "|", &cols, false)?;
        rows.ids.push(file.int(n, "user_id", f[0])?);
        rows.lines.push(n);
        age.push(age_bucket(file.int(n, "age", f[1])?).to_string());
        gender.push(f[2].trim().to_string());
        occupation.push(f[3].trim().to_string());
    }
    let (ids, order) = rows.sorted_ids(&file, "user_id")?;
    Ok(Entities {
        ids,
        features: vec![
            Feature::categorical("age", &permute(&age, &order)),
            Feature::categorical("gender", &permute(&gender, &order)),
            Feature::categorical("occupation", &permute(&occupation, &order)),
        ],
    })
}

/// Reads `u.item` (Latin-1): `id|title|release date|video date|url|19 genre flags`.
fn ml100k_items(dir: &Path) -> Result<Entities> {
    let genre_names: Vec<String> = match std::fs::metadata(dir.join("u.genre")) {
        Ok(_) => {
            let file = TextFile::latin1(&dir.join("u.genre"))?;
            let mut names = vec![];
            for (n, line) in file.lines()? {
                let f = file.fields(n, line, "|", &["genre", "index"], false)?;
                names.push(f[0].to_string());
            }
            names
        }
        Err(_) => ML100K_GENRES.iter().map(|s| s.to_string()).collect(),
    };
    let file = TextFile::latin1(&dir.join("u.item"))?;
    let mut cols = vec!["item_id", "title", "release_date", "video_release_date", "url"];
    let genre_cols: Vec<String> = genre_names.iter().map(|g| format!("genre {g}")).collect();
    cols.extend(genre_cols.iter().map(String::as_str));
    let mut rows = EntityRows { ids: vec![], lines: vec![] };
    let (mut year, mut genres) = (vec![], vec![]);
    for (n, line) in file.lines()? {
        let f = file.fields(n, line, "|", &cols, false)?;
        rows.ids.push(file.int(n, "item_id", f[0])?);
        rows.lines.push(n);
        let date = f[2].trim();
        let y = date.rsplit('-').next().unwrap_or("");
        if !date.is_empty() && (y.len() != 4 || y.parse::<u16>().is_err()) {
            return Err(file.error(
                n,
                Some("release_date"),
                format!("expected a date like 01-Jan-1995, found {date:?}"),
            ));
        }
        year.push(y.to_string());
        let mut set = vec![];
        for (g, flag) in f[5..].iter().enumerate() {
            match flag.trim() {
                "1" => set.push(genre_names[g].clone()),
                "0" => {}
                other => return Err(file.error(n, Some(&genre_cols[g]), format!("expected 0 or 1, found {other:?}"))),
            }
        }
        genres.push(set);
    }
    let (ids, order) = rows.sorted_ids(&file, "item_id")?;
    Ok(Entities {
        ids,
        features: vec![
            Feature::multi_hot("genres", &permute(&genres, &order)),
            Feature::categorical("year", &permute(&year, &order)),
        ],
    })
}

/// Reads a ratings file (`user SEP item SEP rating SEP timestamp`) against known users and items.
fn ratings(
    file: &TextFile,
    sep: &str,
    users: &Ids,
    items: &Ids,
    user_table: &str,
    item_table: &str,
) -> Result<Interactions> {
    let cols = ["user_id", "item_id", "rating", "timestamp"];
    let lines = file.lines()?;
    let mut x = Interactions {
        user: Vec::with_capacity(lines.len()),
        item: Vec::with_capacity(lines.len()),
        timestamp: Some(Vec::with_capacity(lines.len())),
        weight: None,
    };
    let ts = x.timestamp.as_mut().expect("set above");
    for (n, line) in lines {
        let f = file.fields(n, line, sep, &cols, false)?;
        x.user.push(lookup(users, file.int(n, "user_id", f[0])?, file, n, "user_id", user_table)?);
        x.item.push(lookup(items, file.int(n, "item_id", f[1])?, file, n, "item_id", item_table)?);
        f[2].trim()
            .parse::<f64>()
            .map_err(|_| file.error(n, Some("rating"), format!("expected a number, found {:?}", f[2])))?;
        ts.push(file.int(n, "timestamp", f[3])?);
    }
    Ok(x)
}

/// Reads a MovieLens 100K folder.
pub fn read_ml100k(dir: &Path) -> Result<Dataset> {
    let users = ml100k_users(dir)?;
    let items = ml100k_items(dir)?;
    let file = TextFile::utf8(&dir.join("u.data"))?;
    let interactions = ratings(&file, "\t", &users.ids, &items.ids, "u.user", "u.item")?;
    Ok(Dataset { format: "movielens-100k".into(), users, items, interactions })
}

/// Reads `users.dat`: `UserID::Gender::Age::Occupation::Zip`.
fn ml1m_users(dir: &Path) -> Result<Entities> {
    let file = TextFile::utf8(&dir.join("users.dat"))?;
    let cols = ["user_id", "gender", "age", "occupation", "zip"];
    let mut rows = EntityRows { ids: vec![], lines: vec![] };
    let (mut age, mut gender, mut occupation) = (vec![], vec![], vec![]);
    for (n, line) in file.lines()? {
        let f = file.fields(n, line, "::", &cols, false)?;
        rows.ids.push(file.int(n, "user_id", f[0])?);
        rows.lines.push(n);
        gender.push(f[1].trim().to_string());
        age.push(file.int(n, "age", f[2])?.to_string());
        occupation.push(file.int(n, "occupation", f[3])?.to_string());
    }
    let (ids, order) = rows.sorted_ids(&file, "user_id")?;
    Ok(Entities {
        ids,
        features: vec![
            Feature::categorical("age", &permute(&age, &order)),
            Feature::categorical("gender", &permute(&gender, &order)),
            Feature::categorical("occupation", &permute(&occupation, &order)),
        ],
    })
}

/// Reads `movies.dat` (Latin-1): `MovieID::Title (Year)::Genre|Genre`.
fn ml1m_items(dir: &Path) -> Result<Entities> {
    let file = TextFile::latin1(&dir.join("movies.dat"))?;
    let cols = ["item_id", "title", "genres"];
    let mut rows = EntityRows { ids: vec![], lines: vec![] };
    let (mut year, mut genres) = (vec![], vec![]);
    for (n, line) in file.lines()? {
        let f = file.fields(n, line, "::", &cols, false)?;
        rows.ids.push(file.int(n, "item_id", f[0])?);
        rows.lines.push(n);
        let title = f[1].trim_end();
        let y = title
            .strip_suffix(')')
            .and_then(|t| t.get(t.len().saturating_sub(5)..))
            .and_then(|t| t.strip_prefix('('))
            .filter(|y| y.len() == 4 && y.parse::<u16>().is_ok())
            .ok_or_else(|| {
                file.error(n, Some("title"), format!("expected a title ending in \"(YYYY)\", found {title:?}"))
            })?;
        year.push(y.to_string());
        genres.push(f[2].split('|').map(str::trim).filter(|g| !g.is_empty()).map(str::to_string).collect());
    }
    let (ids, order) = rows.sorted_ids(&file, "item_id")?;
    Ok(Entities {
        ids,
        features: vec![
            Feature::multi_hot("genres", &permute(&genres, &order)),
            Feature::categorical("year", &permute(&year, &order)),
        ],
    })
}

/// Reads a MovieLens 1M folder.
pub fn read_ml1m(dir: &Path) -> Result<Dataset> {
    let users = ml1m_users(dir)?;
    let items = ml1m_items(dir)?;
    let file = TextFile::utf8(&dir.join("ratings.dat"))?;
    let interactions = ratings(&file, "::", &users.ids, &items.ids, "users.dat", "movies.dat")?;
    Ok(Dataset { format: "movielens-1m".into(), users, items, interactions })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::FeatureValues;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    fn ml1m(dir: &Path, ratings: &[u8]) {
        write(dir, "users.dat", b"1::F::1::10::48067\n2::M::56::16::70072\n");
        write(dir, "movies.dat", b"1::Toy Story (1995)::Animation|Children's|Comedy\n2::Caf\xe9 (1999)::Drama\n");
        write(dir, "ratings.dat", ratings);
    }

    fn error_text(r: Result<Dataset>) -> String {
        format!("{:#}", r.expect_err("must fail"))
    }

    #[test]
    fn ml1m_reads_features_and_latin1_titles() {
        let dir = tempfile::tempdir().unwrap();
        ml1m(dir.path(), b"1::1::5::978300760\n2::2::3::978302109\n1::2::4::978300000\n");
        let d = read_ml1m(dir.path()).unwrap();
        assert_eq!(d.users.ids, Ids::Int(vec![1, 2]));
        assert_eq!(d.interactions.user, vec![0, 1, 0]);
        assert_eq!(d.interactions.item, vec![0, 1, 1]);
        assert_eq!(d.interactions.timestamp.as_ref().unwrap()[2], 978300000);
        let FeatureValues::MultiHot { vocabulary, offsets, codes } = &d.items.features[0].values else { panic!() };
        assert_eq!(vocabulary, &["Animation", "Children's", "Comedy", "Drama"]);
        assert_eq!(offsets, &[0, 3, 4]);
        assert_eq!(codes, &[0, 1, 2, 3]);
        let FeatureValues::Categorical { vocabulary, codes } = &d.items.features[1].values else { panic!() };
        assert_eq!(
            (vocabulary.as_slice(), codes.as_slice()),
            (&["1995".to_string(), "1999".to_string()][..], &[0, 1][..])
        );
    }

    #[test]
    fn ml1m_unknown_movie_names_file_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        ml1m(dir.path(), b"1::1::5::978300760\n2::9::3::978302109\n");
        let e = error_text(read_ml1m(dir.path()));
        assert!(e.contains("ratings.dat:2: column 'item_id': id 9 is not in movies.dat"), "{e}");
    }

    #[test]
    fn ml1m_wrong_separator_is_reported_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        ml1m(dir.path(), b"1\t1\t5\t978300760\n");
        let e = error_text(read_ml1m(dir.path()));
        assert!(e.contains("ratings.dat:1: expected 4 fields"), "{e}");
        assert!(e.contains("separated by \"\\t\""), "{e}");
    }

    #[test]
    fn ml1m_unparsable_timestamp_names_the_column() {
        let dir = tempfile::tempdir().unwrap();
        ml1m(dir.path(), b"1::1::5::97830x760\n");
        let e = error_text(read_ml1m(dir.path()));
        assert!(e.contains("ratings.dat:1: column 'timestamp': expected an integer, found \"97830x760\""), "{e}");
    }

    #[test]
    fn empty_and_non_utf8_ratings_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        ml1m(dir.path(), b"");
        assert!(error_text(read_ml1m(dir.path())).contains("ratings.dat: file is empty"));
        ml1m(dir.path(), b"1::1::5::978300760\n1::2::\xff::978300760\n");
        let e = error_text(read_ml1m(dir.path()));
        assert!(e.contains("ratings.dat:2: not valid UTF-8"), "{e}");
    }

    #[test]
    fn ml100k_buckets_ages_and_reads_genre_flags() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "u.user", b"1|24|M|technician|85711\n2|53|F|other|94043\n3|12|F|student|1\n");
        let flags = |on: usize| (0..19).map(|g| if g == on { "1" } else { "0" }).collect::<Vec<_>>().join("|");
        let items =
            format!("1|Toy Story (1995)|01-Jan-1995||http://x|{}\n2|Caf (1996)|||http://y|{}\n", flags(3), flags(0));
        write(dir.path(), "u.item", items.as_bytes());
        write(dir.path(), "u.data", b"1\t1\t3\t881250949\n3\t2\t1\t881250950\n");
        let d = read_ml100k(dir.path()).unwrap();
        let FeatureValues::Categorical { vocabulary, codes } = &d.users.features[0].values else { panic!() };
        assert_eq!(vocabulary, &["1", "18", "50"]);
        assert_eq!(codes, &[1, 2, 0]);
        let FeatureValues::MultiHot { vocabulary, .. } = &d.items.features[0].values else { panic!() };
        assert_eq!(vocabulary, &["Animation", "unknown"]);
        let FeatureValues::Categorical { vocabulary, codes } = &d.items.features[1].values else { panic!() };
        assert_eq!((vocabulary.clone(), codes.clone()), (vec!["".to_string(), "1995".to_string()], vec![1, 0]));
    }

    #[test]
    fn ml100k_user_out_of_range_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "u.user", b"1|24|M|technician|85711\n");
        let flags = vec!["0"; 19].join("|");
        write(dir.path(), "u.item", format!("1|A (1995)|01-Jan-1995||u|{flags}\n").as_bytes());
        write(dir.path(), "u.data", b"1\t1\t3\t881250949\n944\t1\t3\t881250949\n");
        let e = error_text(read_ml100k(dir.path()));
        assert!(e.contains("u.data:2: column 'user_id': id 944 is not in u.user"), "{e}");
    }
}
