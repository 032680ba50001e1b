#!/usr/bin/env python3
"""How many shards does deleting one training row retrain, per shard assignment?

Ingests a MovieLens 100K folder with each config given, then, for N seeded random training rows
(not one of a user's last two by time, which the split keeps for validation and test), ingests
the folder without that row and counts the shards whose lineage hash changed: those are the
shards `eemu forget` retrains. Only `eemu ingest` runs; nothing is trained.

    scripts/deletion-cost.py --data ../shared/data/ml-100k --work /tmp/dc \\
        configs/ml-100k.toml balanced.toml
"""
import argparse
import json
import random
import shutil
import subprocess
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+", help="eemu config files to compare")
    ap.add_argument("--data", required=True, help="MovieLens 100K folder (u.data, u.item, u.user)")
    ap.add_argument("--work", required=True, help="scratch folder for the stores (replaced)")
    ap.add_argument("--eemu", default=str(Path(__file__).resolve().parent.parent / "target/release/eemu"))
    ap.add_argument("--rows", type=int, default=20, help="deleted rows to try, one at a time")
    ap.add_argument("--seed", type=int, default=20261204, help="seed of the row sample")
    a = ap.parse_args()
    work = Path(a.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = (Path(a.data) / "u.data").read_text().splitlines()
    by_user = {}
    for i, line in enumerate(rows):
        user, _, _, t = line.split("\t")
        by_user.setdefault(user, []).append((int(t), i))
    kept_by_split = {i for v in by_user.values() for _, i in sorted(v)[-2:]}
    pick = random.Random(a.seed).sample([i for i in range(len(rows)) if i not in kept_by_split], a.rows)

    def lineages(config, data, store):
        shutil.rmtree(store, ignore_errors=True)
        cmd = [a.eemu, "ingest", "--config", config, "--format", "ml-100k", "--input", str(data), "--store", str(store), "-q"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        shards = json.loads((store / "manifest.json").read_text())["shards"]
        return [json.dumps(s, sort_keys=True) for s in shards]

    for config in a.configs:
        base = lineages(config, a.data, work / "base")
        changed = []
        for i in pick:
            data = work / "data"
            shutil.rmtree(data, ignore_errors=True)
            shutil.copytree(a.data, data)
            (data / "u.data").write_text("\n".join(r for j, r in enumerate(rows) if j != i) + "\n")
            after = lineages(config, data, work / "after")
            changed.append(sum(x != y for x, y in zip(base, after)))
        mean = sum(changed) / len(changed)
        print(f"{config}: shards changed per one-row deletion {changed}, mean {mean:.2f} of {len(base)}")


if __name__ == "__main__":
    main()
