#!/usr/bin/env bash
# ml-1m-partial, RETRAIN and Mean with their Adam learning rate chosen on validation (docs/results.md,
# "MovieLens 1M, partial: baselines with tuned rates"): the reference config (configs/ml-1m.toml)
# with learning_rate changed; plain training does not read the algorithm settings, so these pair
# with any EEMU run of the same split (eemu compare). The 2e-4 rows are the 100-epoch GPU run of
# docs/results.md. At once: RETRAIN at 5e-4 and 1e-3 and Mean at 5e-4 on the GPU (one process
# each), Mean at 1e-3 on 8 CPU cores and Mean at 2e-3 (50 epochs) on 4. 413 s on the H200
# machine; run with DEADLINE=530. Results come back packed in out.tgz (rank files for eemu
# compare, JSON, tables, logs). Needs gpu-run/ (scripts/gpu/stage.sh).
source "$(dirname "$0")/common.sh"
for lr in 5e-4 1e-3 2e-3; do ingest_lr configs/ml-1m.toml $lr ml-1m $W/ml-1m-partial $W/s$lr; done
ev retrain-5e-4 $W/s5e-4 cuda retrain & P1=$!
ev retrain-1e-3 $W/s1e-3 cuda retrain & P2=$!
ev mean-5e-4 $W/s5e-4 cuda mean & P3=$!
ev mean-1e-3 $W/s1e-3 cpu mean --jobs 8 & P4=$!
EPOCHS=50 ev mean-2e-3 $W/s2e-3 cpu mean --jobs 4 & P5=$!
wait_for retrain-5e-4:$P1 retrain-1e-3:$P2 mean-5e-4:$P3 mean-1e-3:$P4 mean-2e-3:$P5
finish
