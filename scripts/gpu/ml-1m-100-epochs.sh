#!/usr/bin/env bash
# ml-1m-partial, 100 epochs, evaluated every 10 (docs/results.md): RETRAIN and Mean on the GPU
# (one process each), EEMU with batched Reptile (configs/ml-1m-reptile.toml) and per-user
# adaptation on 8 CPU cores; first the training bench on the GPU (batched inner loop,
# docs/benchmarks.md). About 460 s on the H200 machine. Needs gpu-run/ (scripts/gpu/stage.sh).
source "$(dirname "$0")/common.sh"
$B/eemu ingest --config configs/ml-1m-reptile.toml --format ml-1m --input $W/ml-1m-partial --store $W/m1 -q
ev m1-eemu $W/m1 cpu eemu,eemu-adapt --jobs 8 & PE=$!
stamp "GPU bench-train (ml-100k shard 0, one epoch each, after an untimed warm-up epoch)"
timeout 100 $B/bench-train --device cuda --data $W/ml-100k --config configs/ml-100k.toml \
  --only maml-batched,reptile,reptile-batched,standard 2>&1 | grep -v "^20"
stamp "RETRAIN and Mean on the GPU"
ev m1-retrain $W/m1 cuda retrain & PR=$!
ev m1-mean $W/m1 cuda mean & PM=$!
wait_for m1-retrain:$PR m1-mean:$PM m1-eemu:$PE
finish
