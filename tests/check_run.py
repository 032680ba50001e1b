"""Checks a run folder of `eemu infer` against its input, reading it as a data engineer would.

    python tests/check_run.py RUN_DIR INTERACTIONS_CSV USERS_CSV ITEMS_CSV TOP_K

Uses only pyarrow (and the csv module for the inputs, which are all training data: the test
ingests them with [split] mode = "production"). Checks:
- _SUCCESS and manifest.json exist, and the manifest's counts match the file;
- the schema (nested or flat layout; original id types: strings for users, int64 for items);
- one list per user of USERS_CSV, each with min(TOP_K, unseen items) entries, ranks 1..n, scores
  non-increasing, no item the user interacted with, only catalog items;
- users without interactions get the same popularity list, source "fallback", cluster null;
  every other user is "personalized" with a cluster.
Exits 1 with a message on the first violation.
"""
import csv
import json
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq


def fail(msg):
    print(f"check_run: {msg}", file=sys.stderr)
    sys.exit(1)


def main():
    run_dir, interactions, users_csv, items_csv, top_k = sys.argv[1:6]
    top_k = int(top_k)
    for name in ("_SUCCESS", "manifest.json", "recommendations.parquet"):
        if not os.path.isfile(os.path.join(run_dir, name)):
            fail(f"{run_dir}: missing {name}")
    manifest = json.load(open(os.path.join(run_dir, "manifest.json")))
    seen = {}
    with open(interactions) as f:
        for row in csv.DictReader(f):
            seen.setdefault(row["user_id"], set()).add(int(row["item_id"]))
    with open(users_csv) as f:
        users = [row["user_id"] for row in csv.DictReader(f)]
    with open(items_csv) as f:
        catalog = {int(row["item_id"]) for row in csv.DictReader(f)}

    table = pq.read_table(os.path.join(run_dir, "recommendations.parquet"))
    names = table.schema.names
    lists = {}
    meta = {}
    if names == ["user_id", "items", "cluster", "source"]:
        s = table.schema
        expect = {
            "user_id": pa.string(),
            "items": pa.list_(pa.struct([("item_id", pa.int64()), ("score", pa.float32()), ("rank", pa.int32())])),
            "cluster": pa.int32(),
            "source": pa.string(),
        }
        for name, t in expect.items():
            got = s.field(name).type
            # list<item: struct<...>>: compare the value type, not the list field's name
            if name == "items":
                fields = None
                if pa.types.is_list(got) and pa.types.is_struct(got.value_type):
                    fields = [(f.name, f.type) for f in got.value_type]
                if fields != [(f.name, f.type) for f in t.value_type]:
                    fail(f"column items has type {got}, expected {t}")
            elif got != t:
                fail(f"column {name} has type {got}, expected {t}")
        if manifest["layout"] != "nested":
            fail(f"manifest layout {manifest['layout']} but the file is nested")
        for row in table.to_pylist():
            u = row["user_id"]
            if u in lists:
                fail(f"user {u} has two rows")
            lists[u] = [(e["item_id"], e["score"], e["rank"]) for e in row["items"]]
            meta[u] = (row["cluster"], row["source"])
    elif names == ["user_id", "rank", "item_id", "score"]:
        if manifest["layout"] != "flat":
            fail(f"manifest layout {manifest['layout']} but the file is flat")
        for row in table.to_pylist():
            lists.setdefault(row["user_id"], []).append((row["item_id"], row["score"], row["rank"]))
    else:
        fail(f"unexpected columns {names}")

    if manifest["counts"]["users"] != len(users):
        fail(f"manifest counts {manifest['counts']['users']} users, USERS_CSV has {len(users)}")
    if manifest["counts"]["rows"] != table.num_rows:
        fail(f"manifest counts {manifest['counts']['rows']} rows, the file has {table.num_rows}")
    fallback_lists = set()
    for u in users:
        entries = lists.get(u, [])
        unseen = len(catalog - seen.get(u, set()))
        if len(entries) != min(top_k, unseen):
            fail(f"user {u}: {len(entries)} items, expected min({top_k}, {unseen})")
        if [e[2] for e in entries] != list(range(1, len(entries) + 1)):
            fail(f"user {u}: ranks {[e[2] for e in entries]}")
        scores = [e[1] for e in entries]
        if any(a < b for a, b in zip(scores, scores[1:])):
            fail(f"user {u}: scores not in decreasing order")
        items = [e[0] for e in entries]
        if len(set(items)) != len(items) or not set(items) <= catalog:
            fail(f"user {u}: duplicate or unknown items")
        if set(items) & seen.get(u, set()):
            fail(f"user {u}: recommends items the user interacted with: {set(items) & seen[u]}")
        if meta:
            cluster, source = meta[u]
            if u in seen and (source != "personalized" or cluster is None):
                fail(f"user {u} has history but source={source}, cluster={cluster}")
            if u not in seen:
                if source != "fallback" or cluster is not None:
                    fail(f"user {u} has no history but source={source}, cluster={cluster}")
                fallback_lists.add(tuple(items))
    if len(fallback_lists) > 1:
        fail("users without history got different fallback lists")
    print(f"check_run: ok ({len(users)} users, {table.num_rows} rows, layout {manifest['layout']})")


if __name__ == "__main__":
    main()
