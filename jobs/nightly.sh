#!/usr/bin/env bash
# The nightly eemu job, for cron, Airflow, Slurm or Kubernetes: applies pending deletion requests
# (recorded by jobs/forget.sh with EEMU_DEFER=1), trains the shards whose lineage hash has no model
# yet, then runs batch inference and publishes top-K lists for every user to
# <store>/runs/<run-id>/recommendations.parquet (runs/LATEST names the newest run).
#
# Usage: jobs/nightly.sh [STORE]
# Environment (all optional):
#   EEMU_STORE    store folder (default: the first argument, else ./eemu-store)
#   EEMU_CONFIG   TOML config whose [cluster] / [infer] settings to use (training settings must
#                 match the store's); default: the config the store was ingested with
#   EEMU_DEVICE   auto | cpu | cuda | cuda:N (default auto: CUDA when available)
#   EEMU_BIN      the eemu binary (default: target/release/eemu next to this script's repo)
#   EEMU_TORCH_LIB  folder of libtorch's .so files, added to LD_LIBRARY_PATH (needed on a machine
#                 whose libtorch is not where the binary was built, e.g. a GPU node:
#                 python3 -c 'import torch,os;print(os.path.dirname(torch.__file__))'/lib)
#   EEMU_LOG      log filter (info, debug, ...); logs are plain lines on stderr
#
# Exit codes:
#   0  the run was written, or an identical run was already complete (idempotent: rerun freely)
#   1  failure (I/O, training, inference); nothing partial is published, rerun after fixing
#   2  invalid command line or config
#   3  invalid input data (the message names the file, row and column)
#   75 another eemu job holds this store's lock; retry later
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
store="${EEMU_STORE:-${1:-eemu-store}}"
eemu_job nightly "$store" nightly --store "$store" --device "${EEMU_DEVICE:-auto}"
