#!/usr/bin/env python3
"""Checks an eemu run folder as a data engineer would read it, with pyarrow only.

Usage: python tests/check_output.py RUN_DIR EXPECT_JSON

RUN_DIR must hold recommendations.parquet, manifest.json and _SUCCESS. EXPECT_JSON:

    {
      "user_id_type": "int64" | "string",
      "item_id_type": "int64" | "string",        (optional; else taken from the expected item ids)
      "rows": [
        {"user_id": 10, "items": [[item_id, score, rank], ...], "cluster": 3 | null,
         "source": "personalized" | "fallback"},
        ...
      ]
    }

Rows are in output order (one per user). The layout is detected from the columns: nested
(user_id, items, cluster, source) or flat (user_id, rank, item_id, score; a user with an empty
list has no rows, cluster and source are not in the file). Scores are compared within 1e-6.
Exits 0 when everything matches, 1 with a message on the first mismatch, 2 on usage errors.
"""
import json
import math
import os
import sys

try:
    import pyarrow as pa
    import pyarrow.parquet as pq
except ImportError as e:  # the Rust test must fail, not skip, without pyarrow
    print(f"check_output: cannot import pyarrow ({e}): run `make setup`", file=sys.stderr)
    sys.exit(2)

SCORE_TOLERANCE = 1e-6
NESTED_COLUMNS = ["user_id", "items", "cluster", "source"]
FLAT_COLUMNS = ["user_id", "rank", "item_id", "score"]
TYPES = {"int64": pa.int64(), "string": pa.string()}


class Mismatch(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise Mismatch(message)


def arrow_type(name, what):
    expect(name in TYPES, f"{what}: unknown type {name!r} in the expected JSON (int64 or string)")
    return TYPES[name]


def check_field(field, name, typ, nullable):
    expect(field.name == name, f"column {field.name!r}: expected name {name!r}")
    expect(field.type == typ, f"column {name!r}: type {field.type}, expected {typ}")
    expect(field.nullable == nullable, f"column {name!r}: nullable={field.nullable}, expected {nullable}")


def check_schema(schema, layout, user_type, item_type):
    if layout == "nested":
        check_field(schema.field("user_id"), "user_id", user_type, False)
        items = schema.field("items")
        expect(pa.types.is_list(items.type), f"column 'items': type {items.type}, expected list<struct<...>>")
        expect(not items.nullable, "column 'items': nullable, expected not null")
        element = items.type.value_field
        expect(pa.types.is_struct(element.type), f"column 'items': element type {element.type}, expected struct")
        expect(not element.nullable, "column 'items': list elements nullable, expected not null")
        names = [element.type.field(i).name for i in range(element.type.num_fields)]
        expect(names == ["item_id", "score", "rank"], f"items struct fields {names}, expected [item_id, score, rank]")
        check_field(element.type.field(0), "item_id", item_type, False)
        check_field(element.type.field(1), "score", pa.float32(), False)
        check_field(element.type.field(2), "rank", pa.int32(), False)
        check_field(schema.field("cluster"), "cluster", pa.int32(), True)
        check_field(schema.field("source"), "source", pa.string(), False)
    else:
        check_field(schema.field("user_id"), "user_id", user_type, False)
        check_field(schema.field("rank"), "rank", pa.int32(), False)
        check_field(schema.field("item_id"), "item_id", item_type, False)
        check_field(schema.field("score"), "score", pa.float32(), False)


def same_id(got, want, typ):
    if typ == pa.int64():
        return isinstance(got, int) and isinstance(want, int) and got == want
    return isinstance(got, str) and isinstance(want, str) and got == want


def check_entries(user, got, want, item_type):
    expect(len(got) == len(want), f"user {user!r}: {len(got)} list entries, expected {len(want)}")
    for i, ((g_item, g_score, g_rank), (w_item, w_score, w_rank)) in enumerate(zip(got, want)):
        where = f"user {user!r}, entry {i}"
        expect(same_id(g_item, w_item, item_type), f"{where}: item_id {g_item!r}, expected {w_item!r}")
        expect(g_rank == w_rank, f"{where}: rank {g_rank!r}, expected {w_rank!r}")
        expect(
            g_score is not None and math.isfinite(g_score) == math.isfinite(w_score)
            and (abs(g_score - w_score) <= SCORE_TOLERANCE or g_score == w_score),
            f"{where}: score {g_score!r}, expected {w_score!r} (tolerance {SCORE_TOLERANCE})",
        )


def check_nested(table, rows, user_type, item_type):
    expect(table.num_rows == len(rows), f"{table.num_rows} rows, expected {len(rows)} (one per user)")
    for col in ["user_id", "items", "source"]:
        expect(table.column(col).null_count == 0, f"column {col!r} has {table.column(col).null_count} nulls")
    got_rows = table.to_pylist()
    for n, (got, want) in enumerate(zip(got_rows, rows)):
        user = want["user_id"]
        expect(same_id(got["user_id"], user, user_type), f"row {n}: user_id {got['user_id']!r}, expected {user!r}")
        entries = [(e["item_id"], e["score"], e["rank"]) for e in got["items"]]
        check_entries(user, entries, want["items"], item_type)
        expect(got["cluster"] == want["cluster"], f"user {user!r}: cluster {got['cluster']!r}, expected {want['cluster']!r}")
        expect(got["source"] == want["source"], f"user {user!r}: source {got['source']!r}, expected {want['source']!r}")


def check_flat(table, rows, user_type, item_type):
    expected = [(w["user_id"], e) for w in rows for e in w["items"]]
    expect(table.num_rows == len(expected), f"{table.num_rows} rows, expected {len(expected)} (one per list entry)")
    for col in FLAT_COLUMNS:
        expect(table.column(col).null_count == 0, f"column {col!r} has {table.column(col).null_count} nulls")
    cols = {c: table.column(c).to_pylist() for c in FLAT_COLUMNS}
    # Group the file's rows by user in file order; users must come in the expected order.
    got_users, got_lists = [], []
    for user, rank, item, score in zip(cols["user_id"], cols["rank"], cols["item_id"], cols["score"]):
        if not got_users or got_users[-1] != user:
            got_users.append(user)
            got_lists.append([])
        got_lists[-1].append((item, score, rank))
    want = [w for w in rows if w["items"]]
    expect(
        len(got_users) == len(want),
        f"{len(got_users)} users with rows (each in one contiguous run), expected {len(want)}",
    )
    for n, (g_user, g_list, w) in enumerate(zip(got_users, got_lists, want)):
        expect(same_id(g_user, w["user_id"], user_type), f"user #{n}: user_id {g_user!r}, expected {w['user_id']!r}")
        check_entries(w["user_id"], g_list, w["items"], item_type)


def item_type_of(expected):
    if "item_id_type" in expected:
        return arrow_type(expected["item_id_type"], "item_id_type")
    ids = [e[0] for r in expected["rows"] for e in r["items"]]
    return pa.string() if ids and isinstance(ids[0], str) else pa.int64()


def check(run_dir, expected):
    for name in ["_SUCCESS", "manifest.json", "recommendations.parquet"]:
        expect(os.path.isfile(os.path.join(run_dir, name)), f"{name} missing in {run_dir}")
    with open(os.path.join(run_dir, "manifest.json")) as f:
        json.load(f)
    path = os.path.join(run_dir, "recommendations.parquet")
    schema = pq.read_schema(path)
    names = schema.names
    if names == NESTED_COLUMNS:
        layout = "nested"
    elif names == FLAT_COLUMNS:
        layout = "flat"
    else:
        raise Mismatch(f"columns {names}: expected {NESTED_COLUMNS} (nested) or {FLAT_COLUMNS} (flat)")
    user_type = arrow_type(expected["user_id_type"], "user_id_type")
    item_type = item_type_of(expected)
    check_schema(schema, layout, user_type, item_type)
    table = pq.read_table(path)
    if layout == "nested":
        check_nested(table, expected["rows"], user_type, item_type)
    else:
        check_flat(table, expected["rows"], user_type, item_type)
    return layout, table.num_rows


def main(argv):
    if len(argv) != 3:
        print("usage: check_output.py RUN_DIR EXPECT_JSON", file=sys.stderr)
        return 2
    run_dir, expect_path = argv[1], argv[2]
    with open(expect_path) as f:
        expected = json.load(f)
    try:
        layout, rows = check(run_dir, expected)
    except Mismatch as e:
        print(f"check_output: {run_dir}: MISMATCH: {e}", file=sys.stderr)
        return 1
    print(f"check_output: {run_dir}: ok ({layout}, {rows} rows)")
    print(pq.read_schema(os.path.join(run_dir, "recommendations.parquet")).remove_metadata())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
