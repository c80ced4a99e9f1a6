#!/usr/bin/env bash
# The agent during a burst: FILES small files (1 in 100 a 60-contact CSV export) written as
# fast as one process can into 1,000 new nested folders under a watched place already holding
# BASE files. Prints the agent's CPU time and peak RSS from the first write until every file
# is spooled and sent, and how long that took.
# Usage: tests/bench/burst.sh [FILES] [BASE]   (defaults 100000 and 200000; builds release)
set -euo pipefail
files=${1:-100000}
base=${2:-200000}
. "$(dirname "$0")/lib.sh"
bench_init
collector_config "max_events_per_sec = 1000000\n"
agent_config "watch = [\"$d/w\"]\nsettle_ms = 300\n"
small_files "$d/w/base" "$base"
start_collector
sleep 1
enroll_agent bench
start_agent
wait_indexed "$base" 300
sleep 2
tick=$(getconf CLK_TCK)
s0=$(awk '{print $14+$15}' /proc/$AP/stat)
t0=$(date +%s.%N)
python3 - "$d/w/burst" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
rows = ["First Name,Last Name,Email,Phone"] + [f"Ann,Lee{i},ann.lee{i}@customer{i}.com,(415) 555-{i:04d}" for i in range(60)]
export = "\n".join(rows) + "\n"
per = max(1, n // 1000)
for i in range(n):
    k = i // per
    d = os.path.join(root, f"a{k // 100}", f"b{k // 10 % 10}", f"c{k % 10}")
    if i % per == 0:
        os.makedirs(d, exist_ok=True)
    name, body = (f"contacts-{i}.csv", export) if i % 100 == 0 else (f"note-{i}.txt", f"note {i}\n")
    with open(os.path.join(d, name), "w") as f:
        f.write(body)
PY
t1=$(date +%s.%N)
# Until the agent has sealed every file and the collector acknowledged them.
for _ in $(seq 1 1200); do
  st=$("$B/holdfast-agent" status --json --config "$d/a.toml" 2>/dev/null || true)
  seq=$(echo "$st" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["last_seq"], v["spool_backlog"])' 2>/dev/null || echo "0 1")
  set -- $seq
  [ "$1" -ge "$files" ] && [ "$2" -eq 0 ] && break
  sleep 0.5
done
t2=$(date +%s.%N)
s1=$(awk '{print $14+$15}' /proc/$AP/stat)
echo "burst of $files files (on top of $base watched): written in $(python3 -c "print(round($t1-$t0,1))") s, all sent $(python3 -c "print(round($t2-$t0,1))") s after the first write"
echo "agent CPU during the burst: $(( (s1 - s0) * 1000 / tick )) ms; events sealed: $1"
grep -E 'VmRSS|VmHWM' /proc/$AP/status
grep -c watch_overflow "$d/a.log" | sed 's/^/overflow log lines: /' || true
