"""Scans every file of an eemu store for deleted data, as a privacy auditor would.

    python tests/scan_store.py STORE DELETED_USER [USER,ITEM ...]

Reads every file of STORE: Parquet files through pyarrow (every column, nested lists included,
as text), JSON and text files as text, any other file (model weights) as bytes. Fails when
- the deleted user's id appears as a token in any file;
- a deleted (user, item) interaction is still in the dataset's interactions.parquet (internal
  ids mapped back to original ids through users.parquet and items.parquet);
- a file is left half-written (a temporary name: `.<name>.tmp-<pid>`).
Prints how many files it read. Exits 1 with a message on the first violation.
"""
import json
import os
import re
import sys

import pyarrow.parquet as pq


def fail(msg):
    print(f"scan_store: {msg}", file=sys.stderr)
    sys.exit(1)


def parquet_text(path):
    table = pq.read_table(path)
    return json.dumps(table.to_pylist(), default=str)


def check_interactions(dataset_dir, pairs):
    def ids(side):
        t = pq.read_table(os.path.join(dataset_dir, f"{side}s.parquet"))
        return dict(zip(t.column(side).to_pylist(), t.column(f"{side}_id").to_pylist()))

    users, items = ids("user"), ids("item")
    x = pq.read_table(os.path.join(dataset_dir, "interactions.parquet"))
    stored = {(str(users[u]), str(items[i])) for u, i in zip(x.column("user").to_pylist(), x.column("item").to_pylist())}
    for pair in pairs:
        if pair in stored:
            fail(f"{dataset_dir}: deleted interaction {pair} is still stored")
    return len(stored)


def main():
    store, user = sys.argv[1], sys.argv[2]
    pairs = [tuple(p.split(",", 1)) for p in sys.argv[3:]]
    token = re.compile(r"(?<![\w-])" + re.escape(user) + r"(?![\w-])")
    files = 0
    datasets = 0
    for root, _, names in os.walk(store):
        for name in names:
            path = os.path.join(root, name)
            files += 1
            if ".tmp-" in name:
                fail(f"{path}: a half-written file")
            if name.endswith(".parquet"):
                text = parquet_text(path)
            else:
                with open(path, "rb") as f:
                    text = f.read().decode("utf-8", errors="replace")
            if token.search(text):
                fail(f"{path}: holds the deleted user {user}")
            if name == "interactions.parquet":
                check_interactions(root, pairs)
                datasets += 1
    if datasets != 1:
        fail(f"{datasets} datasets in the store, expected exactly 1")
    print(f"scan_store: {files} files read, no deleted data found")


if __name__ == "__main__":
    main()
