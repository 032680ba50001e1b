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
for lr in 5e-4 1e-3 2e-3; do
  sed "s/^learning_rate = 2e-4/learning_rate = $lr/" configs/ml-1m.toml > $W/m1-$lr.toml
  grep -q "^learning_rate = $lr" $W/m1-$lr.toml || { echo "learning_rate not set in $W/m1-$lr.toml"; exit 1; }
  $B/eemu ingest --config $W/m1-$lr.toml --format ml-1m --input $W/ml-1m-partial --store $W/s$lr -q
done
# run NAME STORE DEVICE METHOD EPOCHS [evaluate options...]: one evaluation, evaluated every 10 epochs.
run() {
  local n=$1 s=$2 d=$3 m=$4 e=$5; shift 5
  $B/eemu evaluate --store "$s" --epochs "$e" --eval-every 10 --device "$d" --methods "$m" "$@" \
    --ranks-out "$OUT/$n.parquet" --out "$OUT/$n.json" > "$OUT/$n.txt" 2> "$OUT/$n.log"
}
run retrain-5e-4 $W/s5e-4 cuda retrain 100 & P1=$!
run retrain-1e-3 $W/s1e-3 cuda retrain 100 & P2=$!
run mean-5e-4 $W/s5e-4 cuda mean 100 & P3=$!
run mean-1e-3 $W/s1e-3 cpu mean 100 --jobs 8 & P4=$!
run mean-2e-3 $W/s2e-3 cpu mean 50 --jobs 4 & P5=$!
(sleep 150; stamp "load at 150 s"; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader; uptime) & PS=$!
wait_for retrain-5e-4:$P1 retrain-1e-3:$P2 mean-5e-4:$P3 mean-1e-3:$P4 mean-2e-3:$P5
pkill -P $PS 2>/dev/null; kill $PS 2>/dev/null
finish
