#!/usr/bin/env bash
# Runs a local 3-store TinyKV cluster from release binaries: stores 1-3 on 127.0.0.1:20160-20162,
# data under ./data/store-N, logs in ./data/store-N.log. Ctrl-C (or SIGTERM) stops all three
# cleanly; running it again resumes from the same data. Usage: scripts/cluster.sh [BIN_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${1:-${CARGO_TARGET_DIR:-target}/release}"
data="${TINYKV_DATA:-data}"
base_port="${TINYKV_BASE_PORT:-20160}"
mkdir -p "$data"

addrs=(); initial=""
for i in 1 2 3; do
  addrs[$i]="127.0.0.1:$((base_port + i - 1))"
  initial+="${initial:+,}$i=${addrs[$i]}"
done
for i in 1 2 3; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$((base_port + i - 1))") 2>/dev/null; then
    echo "make cluster: ${addrs[$i]} is already in use (another cluster running?)" >&2
    exit 1
  fi
done

pids=()
stop() {
  trap - INT TERM
  echo; echo "stopping the cluster..."
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  status=0
  for p in "${pids[@]}"; do wait "$p" || status=1; done
  if [ "$status" -eq 0 ]; then echo "all stores stopped cleanly"; else echo "a store did not stop cleanly; see $data/store-N.log" >&2; fi
  exit "$status"
}
trap stop INT TERM

for i in 1 2 3; do
  "$bin/tinykv-server" --store-id "$i" --addr "${addrs[$i]}" --data-dir "$data/store-$i" \
    --initial-cluster "$initial" >>"$data/store-$i.log" 2>&1 &
  pids+=($!)
done
sleep 1
for i in 1 2 3; do
  if ! kill -0 "${pids[$((i-1))]}" 2>/dev/null; then
    echo "store $i failed to start:" >&2; tail -n 3 "$data/store-$i.log" >&2
    stop
  fi
done

eps="${addrs[1]},${addrs[2]},${addrs[3]}"
cat <<MSG
TinyKV cluster running: stores 1-3 on ${eps//,/ }; data in $data/, logs in $data/store-N.log.
Try, in another terminal:
  $bin/tinykv-ctl put hello world
  $bin/tinykv-ctl get hello
  $bin/tinykv-ctl scan "" --limit 10
  $bin/tinykv-bench --clients 64 --workload write --duration 10
(tinykv-ctl and tinykv-bench default to --endpoints $eps.)
Press Ctrl-C to stop the cluster.
MSG
# Wait until a store exits on its own (then stop the rest) or a signal arrives.
while :; do
  for p in "${pids[@]}"; do
    if ! kill -0 "$p" 2>/dev/null; then
      echo "a store exited unexpectedly; see $data/store-N.log" >&2
      stop
    fi
  done
  sleep 1
done
