# Sourced by the GPU run scripts (on the GPU machine, repository root): unpacks gpu-run/ (made by
# scripts/gpu/stage.sh) into $W, points LD_LIBRARY_PATH at that machine's torch libraries, and
# defines stamp, ev (one `eemu evaluate` in the background, output under $OUT) and wait_for.
set -u
G=gpu-run
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))')/lib
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
T0=$(date +%s); DEADLINE=${DEADLINE:-500}
W=/tmp/w; B=$W/bin; mkdir -p $B
for f in eemu eemu-engine bench-train; do gzip -dc $G/$f.gz > $B/$f; chmod +x $B/$f; done
tar xzf $G/data.tgz -C $W
export EEMU_ENGINE=$B/eemu-engine
stamp() { echo "=== [$(( $(date +%s) - T0 )) s] $*"; }
stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc; $B/eemu --version
# ev NAME STORE DEVICE METHODS [evaluate options...]: EPOCHS epochs (default 100), evaluated
# every 10; rank files (for eemu compare), JSON, table and log under $OUT.
ev() {
  local n=$1 s=$2 d=$3 m=$4; shift 4
  $B/eemu evaluate --store "$s" --epochs "${EPOCHS:-100}" --eval-every 10 --device "$d" --methods "$m" "$@" \
    --ranks-out "$OUT/$n.parquet" --out "$OUT/$n.json" > "$OUT/$n.txt" 2> "$OUT/$n.log"
}
# ingest_lr CONFIG LR FORMAT INPUT STORE: ingests INPUT into STORE with CONFIG's learning_rate
# (2e-4 in the shipped configs) set to LR.
ingest_lr() {
  local c=$W/$(basename "$1" .toml)-$2.toml
  sed "s/^learning_rate = 2e-4/learning_rate = $2/" "$1" > "$c"
  grep -q "^learning_rate = $2" "$c" || { echo "learning_rate not set in $c"; exit 1; }
  $B/eemu ingest --config "$c" --format "$3" --input "$4" --store "$5" -q
}
# wait_for NAME:PID...: waits until they end or DEADLINE seconds have passed, then stops the rest
# and prints each one's table and evaluation log (every evaluated epoch logs the test metrics of
# the epoch chosen on validation so far, so a method cut short still leaves its numbers).
wait_for() {
  local alive n=0 x
  while [ $(( $(date +%s) - T0 )) -lt "$DEADLINE" ]; do
    alive=0; for x in "$@"; do kill -0 "${x#*:}" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 5; n=$((n + 1))
    if [ $((n % 12)) = 0 ]; then
      stamp "progress"; for x in "$@"; do grep evaluated "$OUT/${x%%:*}.log" | tail -1 | cut -c 28-; done
    fi
  done
  stamp "end of wait"
  for x in "$@"; do kill -0 "${x#*:}" 2>/dev/null && { echo "stopping ${x%%:*}"; pkill -P "${x#*:}"; kill "${x#*:}"; }; done
  pkill -f "$B/eemu" 2>/dev/null || true
  for x in "$@"; do
    echo "--- ${x%%:*}"; grep -v "^\s*$" "$OUT/${x%%:*}.txt"
    grep -ih "evaluated\|warn\|error" "$OUT/${x%%:*}.log" | sed 's/^20[-0-9T:.]*Z *//'
  done
}
# kernel_hashes: shard 0 of a small synthetic store ($W/in, made here if absent), one FOMAML
# epoch on the CPU, with the kernel caps (eemu's default) and with the native kernels; prints each
# model file's SHA-256 next to the development machine's (AMD EPYC with AVX-512, 2026-11-27).
kernel_hashes() {
  sed 's/^epochs = 5$/epochs = 1/' configs/demo.toml > $W/t.toml
  [ -f $W/in/interactions.csv ] ||
    $B/eemu synth --out $W/in --seed 7 --users 150 --items 100 --interactions-per-user 10..20 -q
  local m
  for m in capped native; do
    $B/eemu ingest --config $W/t.toml --input $W/in/interactions.csv --users $W/in/users.csv \
      --items $W/in/items.csv --store $W/k-$m -q
  done
  $B/eemu train --store $W/k-capped --device cpu --shard 0 -q
  MKL_CBWR= ATEN_CPU_CAPABILITY=avx512 ONEDNN_MAX_CPU_ISA=ALL $B/eemu train --store $W/k-native --device cpu --shard 0 -q
  stamp "shard 0 model files (development machine: capped 96d13d9518b346f1688c6d4e9fdf0b220161d3430a707323ff1915dc232fbeb3, native 0e0816e25e7f8c7b6ca1d518b9a21d239ef8aa7b3894a89ce89d60b6215d31ea)"
  sha256sum $W/k-*/shards/0/*/model.safetensors
  grep -h '"cpu' $W/k-*/shards/0/*/train-log.json | sort | uniq
}
# finish: packs everything under $OUT into $OUT/out.tgz (the device tool brings back at most
# eight files from $OUT) and prints its contents.
finish() {
  (cd "$OUT" && tar czf /tmp/out.tgz --exclude=out.tgz . && find . -type f ! -name out.tgz -delete && mv /tmp/out.tgz .)
  tar tzvf "$OUT/out.tgz"
  stamp "end"
}
