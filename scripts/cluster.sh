#!/usr/bin/env bash
# Runs a local TinyKV cluster with a scheduler (Project 3C), from release binaries.
#
#   scripts/cluster.sh [BIN_DIR]       (make cluster) the scheduler on 127.0.0.1:2379, data in
#       ./data/scheduler, log ./data/scheduler.log; stores on 127.0.0.1:20160-20162 with
#       --scheduler, data in ./data/store-N, logs ./data/store-N.log (N = 1, 2, 3, and every
#       store-N a `cluster.sh add` made earlier, on port base+N-1). Waits in the foreground:
#       Ctrl-C or SIGTERM stops it all cleanly, any process exiting stops the others; running it
#       again resumes from the same data.
#   scripts/cluster.sh add [BIN_DIR]   (make cluster-add) one more store for the running cluster,
#       in the foreground: the lowest N >= 4 whose port base+N-1 is free, data ./data/store-N
#       (resumed if it exists), log ./data/store-N.log. Ctrl-C stops it cleanly; so does stopping
#       the cluster (its pid is in ./data/store-N.pid while it runs).
#
# BIN_DIR holds tinykv-server, tinykv-scheduler and tinykv-ctl (default
# ${CARGO_TARGET_DIR:-target}/release). Environment:
#   TINYKV_DATA            data and logs (default data; relative to the repository)
#   TINYKV_BASE_PORT       store N listens on base+N-1 (default 20160)
#   TINYKV_SCHEDULER_PORT  the scheduler's port (default 2379)
#   TINYKV_REGION_MAX_SIZE, TINYKV_REGION_SPLIT_SIZE  region sizes ("1MiB", "768KiB", bytes;
#       default TinyKV's 144MiB and 96MiB), read when the cluster starts
# Optional files: $TINYKV_DATA/store.toml (settings of every store, see kvserver/src/config.rs)
# and $TINYKV_DATA/scheduler.toml (the scheduler's, see scheduler/src/config.rs). Each start
# writes $TINYKV_DATA/store.generated.toml from store.toml and the TINYKV_REGION_* variables;
# every store, added ones too, runs with --config that file.
# Needs bash 5.1 or later (`wait -n -p`).
set -uo pipefail
cd "$(dirname "$0")/.."

mode=start
if [ "${1:-}" = add ]; then mode=add; shift; fi
if [ $# -gt 1 ] || [[ "${1:-}" == -* ]]; then
  echo "usage: scripts/cluster.sh [add] [BIN_DIR]" >&2
  exit 2
fi
me="cluster.sh"; [ "$mode" = start ] || me="cluster.sh add"
bin="${1:-${CARGO_TARGET_DIR:-target}/release}"
data="${TINYKV_DATA:-data}"
base_port="${TINYKV_BASE_PORT:-20160}"
sched_port="${TINYKV_SCHEDULER_PORT:-2379}"
sched="127.0.0.1:$sched_port"
gen="$data/store.generated.toml"

fail() { echo "$me: $*" >&2; exit 1; }

if ((BASH_VERSINFO[0] < 5 || (BASH_VERSINFO[0] == 5 && BASH_VERSINFO[1] < 1))); then
  fail "needs bash 5.1 or later (this is $BASH_VERSION)"
fi
for v in base_port sched_port; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] && [ "${!v}" -le 65535 ] ||
    fail "bad port ${!v} (TINYKV_BASE_PORT, TINYKV_SCHEDULER_PORT: 1-65535)"
done
for b in tinykv-server tinykv-scheduler; do
  [ -x "$bin/$b" ] || fail "missing $bin/$b: build it with" \
    "cargo build --release -p kvserver -p scheduler --bins (make cluster does)"
done
mkdir -p "$data" || fail "cannot create $data"

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_of() { echo $((base_port + $1 - 1)); }

# Waits for child $1 and sets `reaped` to its exit status. Bash can lose the status of a child
# that exits just as a trapped signal interrupts `wait -n` (`wait` then answers -1, or 127): then
# the last line of its log $2 says whether it stopped cleanly ($3, what it logs last when it
# does), and the status is "unknown" if it does not.
reap() {
  wait "$1" 2>/dev/null; reaped=$?
  if [ "$reaped" -lt 0 ] || [ "$reaped" -eq 127 ]; then
    reaped=unknown
    if tail -n 1 "$2" 2>/dev/null | grep -qF "$3"; then reaped=0; fi
  fi
}

# Whether pid $1 is the tinykv-server of $data/store-$2 (a pid file may outlive its process).
is_store() {
  [ -r "/proc/$1/cmdline" ] &&
    tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null | grep -qxF -- "$data/store-$2"
}

# $gen: $data/store.toml without the keys the environment sets, then those keys.
write_store_config() {
  local keys=() lines=() var key val
  for var in TINYKV_REGION_MAX_SIZE:region-max-size TINYKV_REGION_SPLIT_SIZE:region-split-size; do
    key="${var#*:}"; var="${var%%:*}"; val="${!var:-}"
    [ -n "$val" ] || continue
    [[ "$val" =~ ^[0-9]+(\.[0-9]+)?\ ?[A-Za-z]*$ ]] ||
      fail "$var=$val is not a size (e.g. 1MiB, 768KiB, 1048576)"
    keys+=("$key"); lines+=("$key = \"$val\"")
  done
  {
    echo "# Written by scripts/cluster.sh at each start of the cluster: $data/store.toml (if any),"
    echo "# then TINYKV_REGION_MAX_SIZE / TINYKV_REGION_SPLIT_SIZE. Edit store.toml, not this file."
    if [ -f "$data/store.toml" ]; then
      if [ ${#keys[@]} -gt 0 ]; then
        grep -vE "^[[:space:]]*($(IFS='|'; echo "${keys[*]}"))[[:space:]]*=" "$data/store.toml"
      else
        cat "$data/store.toml"
      fi
    fi
    [ ${#lines[@]} -eq 0 ] || printf '%s\n' "${lines[@]}"
  } >"$gen.tmp" && mv "$gen.tmp" "$gen" || fail "cannot write $gen"
}

# ---------------------------------------------------------------------------------------------
# cluster.sh add: one more store, in the foreground.
if [ "$mode" = add ]; then
  listening "$sched_port" ||
    fail "no scheduler on $sched: start the cluster first (make cluster)"
  for var in TINYKV_REGION_MAX_SIZE TINYKV_REGION_SPLIT_SIZE; do
    [ -z "${!var:-}" ] ||
      echo "$me: $var is ignored: the new store takes the cluster's settings from $gen" >&2
  done
  [ -f "$gen" ] || write_store_config
  n=4
  while listening "$(port_of "$n")"; do n=$((n + 1)); done
  [ "$(port_of "$n")" -le 65535 ] || fail "no free port after $base_port"
  addr="127.0.0.1:$(port_of "$n")"
  "$bin/tinykv-server" --scheduler "$sched" --addr "$addr" --data-dir "$data/store-$n" \
    --config "$gen" >>"$data/store-$n.log" 2>&1 &
  pid=$!
  # Reaps the store (status $1 if already reaped) and exits with a word on how it ended.
  finish() {
    trap - INT TERM
    local st="${1:-}"
    if [ -z "$st" ]; then
      kill -TERM "$pid" 2>/dev/null; reap "$pid" "$data/store-$n.log" "server stopped"; st=$reaped
    fi
    rm -f "$data/store-$n.pid"
    if [ "$st" = 0 ]; then echo "store $n stopped cleanly"; exit 0; fi
    echo "store $n exited unexpectedly (exit $st); see $data/store-$n.log" >&2
    exit 1
  }
  trap 'echo; echo "stopping store $n..."; finish' INT TERM
  echo "$pid" >"$data/store-$n.pid"
  sleep 1
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"; st=$?
    echo "store $n failed to start:" >&2; tail -n 3 "$data/store-$n.log" >&2
    rm -f "$data/store-$n.pid"
    exit 1
  fi
  cat <<MSG
Store $n running on $addr with the scheduler at $sched: data in $data/store-$n, log in $data/store-$n.log.
It registers, and the scheduler moves regions and leaders onto it; watch it, in another terminal:
  $bin/tinykv-ctl --scheduler $sched stores
Press Ctrl-C to stop this store (stopping the cluster stops it too).
MSG
  # The store exits 0 on the SIGINT of Ctrl-C (which reaches it too) or on the cluster's SIGTERM.
  while :; do
    gone=""
    wait -n -p gone "$pid"; st=$?
    # No pid: a trapped signal interrupted the wait (its trap runs), or no child is left.
    if [ -z "$gone" ]; then [ "$st" -ge 0 ] && [ "$st" -ne 127 ] || finish; continue; fi
    finish "$st"
  done
fi

# ---------------------------------------------------------------------------------------------
# The cluster: the scheduler, then stores 1-3 and every store-N (N > 3) added earlier.
ns=(1 2 3)
for d in "$data"/store-*/; do
  d="${d%/}"; d="${d##*/store-}"
  if [[ "$d" =~ ^[0-9]+$ ]] && [ "$d" -gt 3 ]; then ns+=("$d"); fi
done
mapfile -t ns < <(printf '%s\n' "${ns[@]}" | sort -n -u)
if listening "$sched_port"; then
  fail "$sched is already in use (another cluster running? TINYKV_SCHEDULER_PORT moves it)"
fi
for i in "${ns[@]}"; do
  if listening "$(port_of "$i")"; then
    fail "127.0.0.1:$(port_of "$i") is already in use (another cluster running?" \
      "TINYKV_BASE_PORT moves the stores)"
  fi
done
write_store_config
sched_conf=()
[ -f "$data/scheduler.toml" ] && sched_conf=(--config "$data/scheduler.toml")

# pids[i]: store i's process; code[i]: its exit status once reaped (unset while it runs);
# the same for the scheduler in sched_pid and sched_code.
pids=(); code=(); declare -A store_of
sched_pid=""; sched_code=""
stop() {
  trap - INT TERM
  echo; echo "stopping the cluster..."
  local i f p bad="" added=()
  # The stores first: ours, and those of `cluster.sh add` (each of their scripts says so).
  for i in "${ns[@]}"; do
    [ -z "${pids[$i]:-}" ] || [ -n "${code[$i]:-}" ] || kill -TERM "${pids[$i]}" 2>/dev/null
  done
  for f in "$data"/store-*.pid; do
    [ -f "$f" ] || continue
    i="${f##*/store-}"; i="${i%.pid}"; p="$(<"$f")"
    if [[ "$p" =~ ^[0-9]+$ ]] && is_store "$p" "$i"; then
      kill -TERM "$p" 2>/dev/null && added+=("$i:$p")
    fi
  done
  for i in "${ns[@]}"; do
    [ -n "${pids[$i]:-}" ] || continue
    if [ -z "${code[$i]:-}" ]; then
      reap "${pids[$i]}" "$data/store-$i.log" "server stopped"; code[$i]=$reaped
    fi
    [ "${code[$i]}" = 0 ] || bad+=" store $i (exit ${code[$i]})"
  done
  for f in "${added[@]}"; do
    i="${f%%:*}"; p="${f#*:}"
    # Not our child: its own script reaps it; wait (at most a minute) until it is gone.
    for _ in $(seq 600); do is_store "$p" "$i" || break; sleep 0.1; done
    ! is_store "$p" "$i" || bad+=" store $i (still running)"
  done
  if [ -z "$bad" ]; then echo "all stores stopped cleanly"; fi
  # Then the scheduler.
  if [ -n "$sched_pid" ]; then
    if [ -z "$sched_code" ]; then
      kill -TERM "$sched_pid" 2>/dev/null
      reap "$sched_pid" "$data/scheduler.log" "scheduler stopped"; sched_code=$reaped
    fi
    if [ "$sched_code" = 0 ]; then
      echo "the scheduler stopped cleanly"
    else
      bad+=" the scheduler (exit $sched_code)"
    fi
  fi
  [ -n "$bad" ] || exit 0
  echo "not stopped cleanly:$bad; see $data/scheduler.log and $data/store-N.log" >&2
  exit 1
}
trap stop INT TERM

"$bin/tinykv-scheduler" --addr "$sched" --data-dir "$data/scheduler" "${sched_conf[@]}" \
  >>"$data/scheduler.log" 2>&1 &
sched_pid=$!
# The stores would wait for it anyway; waiting here says at once when it cannot start.
for _ in $(seq 300); do
  listening "$sched_port" && break
  if ! kill -0 "$sched_pid" 2>/dev/null; then
    echo "the scheduler failed to start:" >&2; tail -n 3 "$data/scheduler.log" >&2
    exit 1
  fi
  sleep 0.1
done
if ! listening "$sched_port"; then
  kill -TERM "$sched_pid" 2>/dev/null; wait "$sched_pid"
  fail "the scheduler did not listen on $sched within 30 s; see $data/scheduler.log"
fi

for i in "${ns[@]}"; do
  "$bin/tinykv-server" --scheduler "$sched" --addr "127.0.0.1:$(port_of "$i")" \
    --data-dir "$data/store-$i" --config "$gen" >>"$data/store-$i.log" 2>&1 &
  pids[$i]=$!; store_of[$!]=$i
done
sleep 1
for i in "${ns[@]}"; do
  if ! kill -0 "${pids[$i]}" 2>/dev/null; then
    wait "${pids[$i]}"; code[$i]=$?
    echo "store $i failed to start:" >&2; tail -n 3 "$data/store-$i.log" >&2
    stop
  fi
done

addrs=""
for i in "${ns[@]}"; do addrs+=" 127.0.0.1:$(port_of "$i")"; done
last="${ns[${#ns[@]}-1]}"
# How to add a store with this script's settings.
envs=""
for var in TINYKV_DATA TINYKV_BASE_PORT TINYKV_SCHEDULER_PORT; do
  [ -z "${!var:-}" ] || envs+="$var=${!var} "
done
add="${envs}make cluster-add"
[ "$bin" = "${CARGO_TARGET_DIR:-target}/release" ] || add="${envs}scripts/cluster.sh add $bin"
# A key's value in $gen ($2 when it has none): the last one, without quotes and comments.
setting() {
  local v
  v="$(sed -n "s/^[[:space:]]*$1[[:space:]]*=[[:space:]]*//p" "$gen" | tail -n 1)"
  v="${v%%#*}"; v="${v//\"/}"; v="${v//\'/}"; v="${v%"${v##*[![:space:]]}"}"
  echo "${v:-$2}"
}
sizes="region-max-size $(setting region-max-size 144MiB), region-split-size"
sizes+=" $(setting region-split-size 96MiB)"
cat <<MSG
TinyKV cluster running: the scheduler on $sched, stores 1-$last on$addrs;
data in $data/, logs in $data/scheduler.log and $data/store-N.log.
Stores' settings in $gen: $sizes.
Try, in another terminal:
  $bin/tinykv-ctl --scheduler $sched put hello world
  $bin/tinykv-ctl --scheduler $sched get hello
  $bin/tinykv-ctl --scheduler $sched scan "" --limit 10
  $bin/tinykv-ctl --scheduler $sched stores
  $bin/tinykv-ctl --scheduler $sched regions
  $bin/tinykv-bench --scheduler $sched --clients 64 --workload write --duration 10
  $add      # one more store
Press Ctrl-C to stop the cluster.
MSG
# Wait until a process exits (then stop the rest) or a signal reaches the script (the trap stops
# them all). Ctrl-C in a terminal sends SIGINT to the whole foreground process group, the
# scheduler and the stores included: they exit cleanly on it, and bash, seeing a child that
# handled SIGINT itself, may return from `wait` with that child's status instead of running the
# trap. So a process that exits with status 0 was stopped by a signal, which is expected; any
# other exit is unexpected. Either way the others are stopped: the stores first, then the
# scheduler.
while :; do
  gone=""
  wait -n -p gone "$sched_pid" "${pids[@]}"; st=$?
  # No pid: a trapped signal interrupted the wait (its trap runs), or no child is left.
  if [ -z "$gone" ]; then [ "$st" -ge 0 ] && [ "$st" -ne 127 ] || stop; continue; fi
  if [ "$gone" = "$sched_pid" ]; then
    what="the scheduler"; log="$data/scheduler.log"; sched_code=$st
  else
    i="${store_of[$gone]}"; what="store $i"; log="$data/store-$i.log"; code[$i]=$st
  fi
  if [ "$st" -eq 0 ]; then
    echo "$what stopped cleanly (on SIGINT or SIGTERM); stopping the others"
  else
    echo "$what exited unexpectedly (exit $st); see $log" >&2
  fi
  stop
done
