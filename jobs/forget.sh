#!/usr/bin/env bash
# The deletion job, for a privacy team's queue (cron, Airflow, Slurm or Kubernetes): records a
# batch of deletion requests durably in the store's ledger, removes the rows, retrains only the
# shards whose lineage hash changed, runs inference again, deletes every artifact of the old data
# and writes an unlearning report to <store>/reports/unlearning-<entry>.{json,txt}.
#
# Usage: jobs/forget.sh REQUESTS [STORE]
#   REQUESTS  CSV or Parquet: user_id, optional item_id (empty: delete the whole user), optional
#             request_id (see `eemu forget --help`)
# Environment (all optional):
#   EEMU_STORE    store folder (default: the second argument, else ./eemu-store)
#   EEMU_DEFER    1: only record the requests; the next nightly job applies them
#   EEMU_CONFIG   TOML config whose [cluster] / [infer] settings to use (training settings must
#                 match the store's); default: the config the store was ingested with
#   EEMU_DEVICE   auto | cpu | cuda | cuda:N (default auto: CUDA when available)
#   EEMU_BIN      the eemu binary (default: target/release/eemu next to this script's repo)
#   EEMU_TORCH_LIB  folder of libtorch's .so files, added to LD_LIBRARY_PATH (see jobs/nightly.sh)
#   EEMU_LOG      log filter (info, debug, ...); logs are plain lines on stderr
#
# Exit codes:
#   0  the requests are applied and the report written (or, with EEMU_DEFER=1, recorded)
#   1  failure after the requests were recorded: rerun the same command; it resumes where it
#      stopped and never applies a request twice (`eemu verify` shows what is left)
#   2  invalid command line or config, or no store
#   3  invalid request file (the message names the file, line and column); nothing recorded
#   75 another eemu job holds this store's lock (the nightly job shares it); retry later
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
if [ $# -lt 1 ]; then
  echo "usage: jobs/forget.sh REQUESTS [STORE]" >&2
  exit 2
fi
requests="$1"
store="${EEMU_STORE:-${2:-eemu-store}}"
if [ ! -f "$requests" ]; then
  echo "forget: request file $requests not found" >&2
  exit 2
fi
defer=()
if [ "${EEMU_DEFER:-0}" = 1 ]; then
  defer=(--defer)
fi
eemu_job forget "$store" forget --requests "$requests" --store "$store" --device "${EEMU_DEVICE:-auto}" "${defer[@]}"
