#!/usr/bin/env bash
# Is training on CUDA reproducible run to run? docs/results.md: three GPU runs of one RETRAIN
# config gave three test HR@10 values, when the model still gathered rows with `index_select`,
# whose CUDA backward accumulates with atomic adds; it now uses `embedding` (model::gather_rows).
# Each training below runs twice on a fresh copy of one ingested store and prints a SHA-256 of
# its model files:
#   1. RETRAIN (one shard, standard) on ml-100k, 10 epochs;
#   2. the demo config's FOMAML (per-user inner steps), one epoch, on synthetic data;
#   3. the same with exact per-user MAML (second order);
# with the current engine, and also with gpu-run/old-eemu-engine.gz when staged (an engine built
# at a commit before gather_rows, e.g. 539fbbe, stripped and gzipped). Then two full RETRAIN
# evaluations (100 epochs, 5e-4) and two Mean ones (8 shards, 2e-3) on CUDA, at once: their rank
# files are identical if training and scoring are reproducible. Last, part 1 of
# scripts/gpu/cpu-kernels.sh (the CPU's model file hashes against the development machine's).
# Needs gpu-run/ (scripts/gpu/stage.sh); about 4 minutes on the H200 machine (211 s, 2026-12-04).
source "$(dirname "$0")/common.sh"
# Everything printed also goes to $OUT/hashes.txt (the output tail alone loses part 1).
exec > >(tee -a /tmp/hashes.txt) 2>&1
ENGINES=eemu-engine
if [ -f $G/old-eemu-engine.gz ]; then
  gzip -dc $G/old-eemu-engine.gz > $B/old-eemu-engine; chmod +x $B/old-eemu-engine
  ENGINES="old-eemu-engine eemu-engine"
fi
sed -e 's/^count = 8/count = 1/' -e 's/^algorithm = "fomaml"/algorithm = "standard"/' \
  -e 's/^epochs = 100/epochs = 10/' -e 's/^learning_rate = 2e-4/learning_rate = 5e-4/' configs/ml-100k.toml > $W/r10.toml
$B/eemu ingest --config $W/r10.toml --format ml-100k --input $W/ml-100k --store $W/r10 -q
sed 's/^epochs = 5$/epochs = 1/' configs/demo.toml > $W/f.toml
sed 's/^epochs = 1$/epochs = 1\nalgorithm = "maml"/' $W/f.toml > $W/m.toml
grep -q '^algorithm = "maml"' $W/m.toml || echo "WARNING: maml config not made"
$B/eemu synth --out $W/in --seed 7 --users 150 --items 100 --interactions-per-user 10..20 -q
for c in f m; do
  $B/eemu ingest --config $W/$c.toml --input $W/in/interactions.csv --users $W/in/users.csv --items $W/in/items.csv --store $W/$c -q
done
for s in r10 f m; do
  for eng in $ENGINES; do
    for k in 1 2; do
      rm -rf $W/x && cp -r $W/$s $W/x
      t=$(date +%s.%N)
      EEMU_ENGINE=$B/$eng $B/eemu train --store $W/x --device cuda -q || echo "train failed: $s $eng"
      echo "$s $eng run $k ($(python3 -c "print(round($(date +%s.%N)-$t,1))") s): $(cat $W/x/shards/*/*/model.safetensors | sha256sum | cut -c1-16)"
    done
  done
  stamp "$s done"
done
ingest_lr configs/ml-100k.toml 2e-3 ml-100k $W/ml-100k $W/m2e-3
export EPOCHS=100
ev retrain-1 $W/r10 cuda retrain & P1=$!
ev retrain-2 $W/r10 cuda retrain & P2=$!
ev mean-1 $W/m2e-3 cuda mean & P3=$!
ev mean-2 $W/m2e-3 cuda mean & P4=$!
DEADLINE=$(( $(date +%s) - T0 + 300 )) wait_for retrain-1:$P1 retrain-2:$P2 mean-1:$P3 mean-2:$P4
for n in retrain mean; do
  echo "$n rank files: $(sha256sum $OUT/$n-1.parquet | cut -c1-16) $(sha256sum $OUT/$n-2.parquet | cut -c1-16)"
done
kernel_hashes
cp /tmp/hashes.txt "$OUT/hashes.txt"
finish
