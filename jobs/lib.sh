# Sourced by jobs/nightly.sh and jobs/forget.sh. eemu_job NAME STORE ARGS... finds the eemu binary
# (EEMU_BIN), adds EEMU_TORCH_LIB to LD_LIBRARY_PATH, puts --config EEMU_CONFIG in front of ARGS
# when set, checks that STORE is a store (exit 2), takes the store's job lock, which every eemu
# job shares (exit 75 while another job holds it), and runs `eemu ARGS...`; its exit code is the
# job's. Messages on stderr start with NAME.
eemu_job() {
  local name=$1 store=$2
  shift 2
  local here
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  local bin="${EEMU_BIN:-$here/target/release/eemu}"
  if [ ! -x "$bin" ]; then
    echo "$name: $bin not found; build it with 'make build' or set EEMU_BIN" >&2
    exit 1
  fi
  if [ -n "${EEMU_TORCH_LIB:-}" ]; then
    export LD_LIBRARY_PATH="$EEMU_TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  local args=("$@")
  if [ -n "${EEMU_CONFIG:-}" ]; then
    args=(--config "$EEMU_CONFIG" "${args[@]}")
  fi
  if [ ! -f "$store/manifest.json" ]; then
    echo "$name: $store is not an eemu store; run 'eemu ingest --store $store ...' first" >&2
    exit 2
  fi
  exec 9>"$store/.job.lock"
  if ! flock -n 9; then
    echo "$name: another eemu job is running on $store" >&2
    exit 75
  fi
  echo "$name: $(date -u +%FT%TZ) $bin ${args[*]}" >&2
  "$bin" "${args[@]}"
}
