#!/usr/bin/env bash
# Follow-up of scripts/gpu/cuda-determinism.sh (docs/results.md, "CUDA determinism", 2026-12-04):
# there, two full RETRAIN evaluations on CUDA (one shard, about 3,400 pairs per batch) gave
# different rank files and two Mean ones (8 shards, about 420 pairs per batch) the same bytes.
# 1. scripts/gpu/cuda-op-probe.py (the machine's own PyTorch): which of the model's backward
#    passes differ run to run at either batch size; in two processes, then with
#    torch.use_deterministic_algorithms(True), then with CUBLAS_WORKSPACE_CONFIG=:4096:8.
# 2. SHA-256 of the model files of `eemu train` on CUDA, 10 epochs on ml-100k, for RETRAIN (5e-4)
#    and Mean (2e-3), each twice one after the other (current engine, and the old index_select
#    one if staged), twice at the same time, twice with CUBLAS_WORKSPACE_CONFIG=:4096:8; RETRAIN
#    also at batch size 8 (about 850 pairs) and Mean at 256 (about 3,400): does the batch size,
#    not the shard count, decide? Then the demo FOMAML and MAML trainings twice each.
# Everything printed is also in $OUT/hashes.txt. Needs gpu-run/ (scripts/gpu/stage.sh); about
# 3 minutes on the H200 machine (estimated; on the 2-core CPU with --device cpu it took 11 min).
source "$(dirname "$0")/common.sh"
exec > >(tee -a "$OUT/hashes.txt") 2>&1
for env in "A=1" "A=2" "PROBE_DETERMINISTIC=1" "CUBLAS_WORKSPACE_CONFIG=:4096:8"; do
  env $env python3 -W ignore scripts/gpu/cuda-op-probe.py
done
stamp "probe done"
sed -e 's/^count = 8/count = 1/' -e 's/^algorithm = "fomaml"/algorithm = "standard"/' \
  -e 's/^epochs = 100/epochs = 10/' -e 's/^learning_rate = 2e-4/learning_rate = 5e-4/' configs/ml-100k.toml > $W/r10.toml
sed -e 's/^algorithm = "fomaml"/algorithm = "standard"/' -e 's/^epochs = 100/epochs = 10/' \
  -e 's/^learning_rate = 2e-4/learning_rate = 2e-3/' configs/ml-100k.toml > $W/m10.toml
sed 's/^batch_size = 32$/batch_size = 8/' $W/r10.toml > $W/r10b8.toml
sed 's/^batch_size = 32$/batch_size = 256/' $W/m10.toml > $W/m10b256.toml
grep -q '^batch_size = 8$' $W/r10b8.toml && grep -q '^batch_size = 256$' $W/m10b256.toml || echo "WARNING: batch configs not made"
for s in r10 m10 r10b8 m10b256; do
  grep -q '^epochs = 10$' $W/$s.toml || echo "WARNING: $s config not made"
  $B/eemu ingest --config $W/$s.toml --format ml-100k --input $W/ml-100k --store $W/$s -q
done
sed 's/^epochs = 5$/epochs = 1/' configs/demo.toml > $W/f.toml
sed 's/^epochs = 1$/epochs = 1\nalgorithm = "maml"/' $W/f.toml > $W/m.toml
$B/eemu synth --out $W/in --seed 7 --users 150 --items 100 --interactions-per-user 10..20 -q
for c in f m; do
  $B/eemu ingest --config $W/$c.toml --input $W/in/interactions.csv --users $W/in/users.csv --items $W/in/items.csv --store $W/$c -q
done
# tr STORE COPY [env...]: trains a fresh copy of STORE on CUDA; prints seconds and the hash.
tr() {
  local s=$1 x=$W/$2; shift 2
  rm -rf $x && cp -r $W/$s $x
  local t=$(date +%s.%N)
  env "$@" $B/eemu train --store $x --device cuda -q > /dev/null || echo "train failed: $s $x"
  echo "$s $(basename $x) $* ($(python3 -c "print(round($(date +%s.%N)-$t,1))") s): $(cat $x/shards/*/*/model.safetensors | sha256sum | cut -c1-16)"
}
ENGINES=eemu-engine
if [ -f $G/old-eemu-engine.gz ]; then
  gzip -dc $G/old-eemu-engine.gz > $B/old-eemu-engine; chmod +x $B/old-eemu-engine
  ENGINES="eemu-engine old-eemu-engine"
fi
for s in r10 m10; do
  for eng in $ENGINES; do
    tr $s seq1 EEMU_ENGINE=$B/$eng; tr $s seq2 EEMU_ENGINE=$B/$eng
  done
  # Explicit PIDs: a bare `wait` would also wait for the tee above, which never ends.
  tr $s par1 EEMU_ENGINE=$B/eemu-engine & P1=$!; tr $s par2 EEMU_ENGINE=$B/eemu-engine & P2=$!; wait $P1 $P2
  tr $s cub1 CUBLAS_WORKSPACE_CONFIG=:4096:8; tr $s cub2 CUBLAS_WORKSPACE_CONFIG=:4096:8
  stamp "$s done"
done
for s in r10b8 m10b256; do tr $s seq1 A=1; tr $s seq2 A=1; done
for s in f m; do tr $s seq1 A=1; tr $s seq2 A=1; done
stamp "end"
