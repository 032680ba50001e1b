#!/usr/bin/env bash
# The CPU kernel caps on another CPU (README, "byte-identical output"; docs/results.md, "CPU
# kernels capped at AVX2"): do the GPU machine's CPU cores train the same bytes as the development
# machine (AMD EPYC with AVX-512, 2026-11-27)? Two checks, both on the CPU:
# 1. Shard 0 of a small synthetic store, one FOMAML epoch, with the caps (eemu's default) and with
#    the native kernels; prints each model file's SHA-256 next to the development machine's.
#    The capped hash matching is what the caps are for; the native one may differ.
# 2. RETRAIN at 5e-4 on ml-100k, 100 epochs (about 8 minutes on one core there; cut at DEADLINE):
#    the development machine's capped run had validation HR@10 10.29, 12.30, 12.94, 12.30, 13.57,
#    14.53, 15.48, 13.89, 17.82, 13.57 at epochs 10 to 100 (chosen epoch 90, test HR@10 10.50).
# Needs gpu-run/ (scripts/gpu/stage.sh). Run with DEADLINE=540 or so.
source "$(dirname "$0")/common.sh"
sed 's/^epochs = 5$/epochs = 1/' configs/demo.toml > $W/t.toml
$B/eemu synth --out $W/in --seed 7 --users 150 --items 100 --interactions-per-user 10..20 -q
for m in capped native; do
  $B/eemu ingest --config $W/t.toml --input $W/in/interactions.csv --users $W/in/users.csv \
    --items $W/in/items.csv --store $W/k-$m -q
done
$B/eemu train --store $W/k-capped --device cpu --shard 0 -q
MKL_CBWR= ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=ALL $B/eemu train --store $W/k-native --device cpu --shard 0 -q
stamp "shard 0 model files (development machine: capped 96d13d9518b346f1688c6d4e9fdf0b220161d3430a707323ff1915dc232fbeb3, native 0e0816e25e7f8c7b6ca1d518b9a21d239ef8aa7b3894a89ce89d60b6215d31ea)"
sha256sum $W/k-*/shards/0/*/model.safetensors
grep -h cpu_kernels $W/k-*/shards/0/*/train-log.json
ingest_lr configs/ml-100k-reptile.toml 5e-4 ml-100k $W/ml-100k $W/r5e-4
ev retrain-5e-4 $W/r5e-4 cpu retrain & P1=$!
wait_for retrain-5e-4:$P1
finish
