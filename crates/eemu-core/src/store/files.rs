//! Crash-safe file writes: every file is written under a temporary name in its final folder,
//! synced, and renamed into place, so a reader sees the old file or the complete new one.
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Rows per Parquet row group: bounds the memory a reader needs per group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// A temporary sibling name of `path` (same folder, so the rename is atomic).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Splits a temporary name as [`temp_path`] makes it (`.<name>.tmp-<pid>`) into the final name
/// and the process that writes it; `None` for any other name.
pub(crate) fn parse_temp_name(file_name: &str) -> Option<(&str, u32)> {
    let (name, pid) = file_name.strip_prefix('.')?.rsplit_once(".tmp-")?;
    Some((name, pid.parse().ok()?))
}

/// Whether process `pid` is running (Linux: `/proc/<pid>` exists; elsewhere assumed not).
pub fn process_alive(pid: u32) -> bool {
    cfg!(target_os = "linux") && Path::new("/proc").join(pid.to_string()).exists()
}

/// Removes the temporary files ([`temp_path`] names) in `dir` that processes which are gone left
/// behind when they were killed mid-write. Files of running processes, this one included, stay.
/// Returns how many were removed; a missing folder has none.
pub fn remove_stale_temp_files(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for path in crate::store::list_dir(dir)? {
        let Some((_, pid)) = path.file_name().and_then(|n| n.to_str()).and_then(parse_temp_name) else {
            continue;
        };
        if pid == std::process::id() || process_alive(pid) || !path.is_file() {
            continue;
        }
        tracing::info!("removing {}, left half-written by process {pid}", path.display());
        fs::remove_file(&path).with_context(|| format!("cannot remove stale temporary file {}", path.display()))?;
        removed += 1;
    }
    Ok(removed)
}

/// Syncs a folder so a rename inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync folder {}", dir.display()))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Renames a finished temporary file into place and syncs the folder.
pub fn publish(tmp: &Path, path: &Path) -> Result<()> {
    fs::rename(tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    sync_dir(parent(path))
}

/// Writes `path` atomically: `write` fills (and syncs) a temporary file beside it, which is then
/// renamed into place; on failure the temporary file is removed and `path` is left as it was.
/// Returns what `write` returns.
pub fn write_via_temp<T>(path: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = temp_path(path);
    let result = write(&tmp).and_then(|value| publish(&tmp, path).map(|()| value));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes bytes to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_via_temp(path, |tmp| {
        let mut f = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))
    })
}

/// Writer settings shared by every Parquet file eemu writes: zstd, bounded row groups.
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).expect("valid zstd level")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_created_by(format!("eemu {}", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Writes one record batch as a Parquet file, atomically.
pub fn write_parquet_atomic(path: &Path, batch: &RecordBatch) -> Result<()> {
    write_via_temp(path, |tmp| {
        let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(parquet_properties()))
            .with_context(|| format!("cannot start Parquet file {}", tmp.display()))?;
        writer.write(batch).with_context(|| format!("cannot write {}", tmp.display()))?;
        let file = writer.into_inner().with_context(|| format!("cannot finish {}", tmp.display()))?;
        file.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))
    })
}

/// SHA-256 of a file's bytes, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(crate::config::hex(&h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_replaces_the_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.json");
        write_atomic(&p, b"one").unwrap();
        // The rename target is a non-empty folder: publishing fails.
        let blocked = dir.path().join("b");
        fs::create_dir_all(blocked.join("x")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert!(!fs::read_dir(dir.path()).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".tmp-")));
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        assert!(!process_alive(dead));
        let stale = dir.path().join(format!(".model.safetensors.tmp-{dead}"));
        let ours = temp_path(&dir.path().join("model.safetensors"));
        let other = dir.path().join("notes.tmp-1");
        let kept_dir = dir.path().join(format!(".folder.tmp-{dead}"));
        for p in [&stale, &ours, &other] {
            fs::write(p, b"x").unwrap();
        }
        fs::create_dir(&kept_dir).unwrap();
        assert_eq!(remove_stale_temp_files(dir.path()).unwrap(), 1);
        assert!(!stale.exists());
        assert!(ours.exists() && other.exists() && kept_dir.exists());
        assert_eq!(remove_stale_temp_files(&dir.path().join("missing")).unwrap(), 0);
    }
}
