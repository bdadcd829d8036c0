#!/usr/bin/env bash
# Runs a local 3-store TinyKV cluster from release binaries: stores 1-3 on 127.0.0.1:20160-20162,
# data under ./data/store-N, logs in ./data/store-N.log. Ctrl-C (or SIGTERM) stops all three
# cleanly; running it again resumes from the same data. Usage: scripts/cluster.sh [BIN_DIR]
# Needs bash 5.1 or later (`wait -n -p`).
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

# pids[i]: store i's process; code[i]: its exit status once reaped (unset while it runs).
pids=(); code=(); declare -A store_of
stop() {
  trap - INT TERM
  echo; echo "stopping the cluster..."
  local i bad=""
  for i in 1 2 3; do
    [ -n "${code[$i]:-}" ] || kill -TERM "${pids[$i]}" 2>/dev/null
  done
  for i in 1 2 3; do
    if [ -z "${code[$i]:-}" ]; then wait "${pids[$i]}"; code[$i]=$?; fi
    [ "${code[$i]}" -eq 0 ] || bad+=" store $i (exit ${code[$i]})"
  done
  if [ -z "$bad" ]; then
    echo "all stores stopped cleanly"; exit 0
  fi
  echo "not stopped cleanly:$bad; see $data/store-N.log" >&2
  exit 1
}
trap stop INT TERM

for i in 1 2 3; do
  "$bin/tinykv-server" --store-id "$i" --addr "${addrs[$i]}" --data-dir "$data/store-$i" \
    --initial-cluster "$initial" >>"$data/store-$i.log" 2>&1 &
  pids[$i]=$!; store_of[$!]=$i
done
sleep 1
for i in 1 2 3; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    wait "${pids[$i]}"; code[$i]=$?
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
# Wait until a store exits (then stop the rest) or a signal reaches the script (the trap stops
# them all). Ctrl-C in a terminal sends SIGINT to the whole foreground process group, the stores
# included: they exit cleanly on it, and bash, seeing a child that handled SIGINT itself, may
# return from `wait` with that child's status instead of running the trap. So a store that exits
# with status 0 was stopped by a signal, which is expected; any other exit is unexpected.
while :; do
  gone=""
  wait -n -p gone "${pids[@]}"; st=$?
  [ -n "$gone" ] || continue
  i="${store_of[$gone]}"; code[$i]=$st
  if [ "$st" -eq 0 ]; then
    echo "store $i stopped cleanly (on SIGINT or SIGTERM); stopping the others"
  else
    echo "store $i exited unexpectedly (exit $st); see $data/store-$i.log" >&2
  fi
  stop
done
