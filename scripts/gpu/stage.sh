#!/usr/bin/env bash
# Stages a GPU run (../shared/docs/gpu.md): builds the release binaries and the training bench
# here, and packs them, stripped and gzipped, with the MovieLens data into the git-ignored
# gpu-run/ folder (about 21 MiB), which the device tool carries next to the working tree.
# Then, on the GPU machine, from the repository root: bash scripts/gpu/<script>.sh
#   scripts/gpu/ml-1m-100-epochs.sh   ml-1m-partial, 100 epochs, batched Reptile (docs/results.md)
#   scripts/gpu/ml-100k-maml.sh       ml-100k, 100 epochs, batched MAML (docs/results.md)
#   scripts/gpu/ml-100k-fomaml-lr.sh  ml-100k, FOMAML at outer learning rates 5e-4 and 1e-3
#   scripts/gpu/ml-1m-tuned.sh        ml-1m-partial, RETRAIN and Mean at learning rates 5e-4 to 2e-3
#   scripts/gpu/cpu-kernels.sh        the CPU kernel caps on the GPU machine's CPU: same bytes as the development machine?
#   scripts/gpu/cuda-determinism.sh  does training on CUDA give the same model files twice?
#   scripts/gpu/cuda-training-hashes.sh  which backward pass is not reproducible on CUDA, and at what batch size?
# The data is licensed: gpu-run/ is git-ignored and must stay so.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/env.sh
DATA=${EEMU_DATA:-../shared/data}
cargo build --release --locked --bin eemu --bin eemu-engine
BENCH=$(cargo bench --locked --no-run --bench train --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "train" and m.get("executable"):
        print(m["executable"])')
rm -rf gpu-run && mkdir gpu-run
for f in target/release/eemu:eemu target/release/eemu-engine:eemu-engine "$BENCH":bench-train; do
  strip -o gpu-run/"${f#*:}" "${f%%:*}" && gzip gpu-run/"${f#*:}"
done
tar czf gpu-run/data.tgz -C "$DATA" ml-100k ml-1m-partial
du -sh gpu-run && ls gpu-run
