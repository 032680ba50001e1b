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
kernel_hashes
ingest_lr configs/ml-100k-reptile.toml 5e-4 ml-100k $W/ml-100k $W/r5e-4
ev retrain-5e-4 $W/r5e-4 cpu retrain & P1=$!
wait_for retrain-5e-4:$P1
finish
