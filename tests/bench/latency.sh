#!/usr/bin/env bash
# Close → committed alert: a 200-contact export is written (open, write, close) into a
# watched folder, once written in place and once as a browser saves (a temporary name
# closed, then renamed); the latency is the collector's receipt time of its event (committed
# in the same transaction as its alert) minus the moment the writer closed the file. RUNS of
# each, on loopback, no other load; prints each latency and the p50 and p99 of each kind.
# Release build, default agent settings (settle 1 s; a file its writer closed is read after
# a 60 ms grace). Usage: tests/bench/latency.sh [RUNS]   (default 21)
set -euo pipefail
runs=${1:-21}
. "$(dirname "$0")/lib.sh"
bench_init
collector_config
agent_config "watch = [\"$d/w\"]\nheartbeat_ms = 15000\n"
mkdir -p "$d/w"
start_collector
sleep 1
enroll_agent bench
start_agent
sleep 2
# Writes report<i>.csv (kind: inplace or rename) and prints the close time in ms.
write_export() {
  python3 - "$d/w" "$1" "$2" <<'PY'
import os, sys, time
folder, i, kind = sys.argv[1], sys.argv[2], sys.argv[3]
final = os.path.join(folder, f"report{kind}{i}.csv")
path = final if kind == "inplace" else os.path.join(folder, f".report{kind}{i}.csv.part")
with open(path, "w") as f:
    f.write("Name,Email,Phone\n")
    for r in range(200):
        f.write(f"Person {r},p{r}.{i}@example.com,+1 415 555 {r:04d}\n")
closed = time.time()
if path != final:
    os.rename(path, final)
print(int(closed * 1000))
PY
}
# The receipt time of the event for NAME, once it is there.
received() {
  local out
  for _ in $(seq 1 400); do
    out=$("$B/holdfast-collector" events list --json --limit 1000 --config "$d/c.toml" 2>/dev/null \
      | python3 -c 'import json,sys
name=sys.argv[1]
for l in sys.stdin:
    e=json.loads(l)
    if e.get("path","").endswith("/"+name) and e.get("rules"):
        print(e["received_ms"]); break' "$1")
    [ -n "$out" ] && { echo "$out"; return; }
    sleep 0.05
  done
  echo "no event for $1" >&2; exit 1
}
for kind in inplace rename; do
  lat=()
  for i in $(seq 1 "$runs"); do
    closed=$(write_export "$i" "$kind")
    got=$(received "report$kind$i.csv")
    lat+=($((got - closed)))
    sleep 0.3
  done
  printf '%s\n' "${lat[@]}" | sort -n | python3 -c '
import sys
v=[int(x) for x in sys.stdin]
p=lambda q: v[min(len(v)-1, int(round(q*(len(v)-1))))]
print(f"'"$kind"': n={len(v)} p50={p(0.5)} ms p99={p(0.99)} ms min={v[0]} max={v[-1]} all={v}")'
done
