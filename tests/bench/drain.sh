#!/usr/bin/env bash
# Offline backlog: how fast one agent seals N file events into its spool while the collector
# is away, and how fast the backlog drains once the collector is back (release build).
# Usage: tests/bench/drain.sh [N]   (from the repository root; default N = 20000)
set -euo pipefail
n=${1:-20000}
. "$(dirname "$0")/lib.sh"
bench_init
collector_config
agent_config "watch = [\"$d/w\"]\nsettle_ms = 300\n"
mkdir -p "$d/w"
start_collector
sleep 1
enroll_agent bench
start_agent
sleep 2
kill $CP; wait $CP 2>/dev/null || true; CP=
status() { "$B/holdfast-agent" status --json --config "$d/a.toml" | python3 -c "import json,sys; s=json.load(sys.stdin); print(s['$1'])"; }
now() { date +%s.%N; }
t0=$(now)
python3 -c "
import os
for i in range($n):
    with open(os.path.join('$d/w', f'f{i:06}.csv'), 'w') as f: f.write(f'id,note\n{i},row\n')
"
until [ "$(status last_seq)" -ge "$n" ]; do sleep 0.2; done
t1=$(now)
"$B/holdfast-collector" serve --config "$d/c.toml" 2>> "$d/c.log" & CP=$!
until [ "$(status spool_backlog)" -eq 0 ]; do sleep 0.2; done
t2=$(now)
python3 -c "
n=$n; s=$t1-$t0; r=$t2-$t1
print(f'sealed {n} events in {s:.1f} s ({n/s:,.0f}/s, includes writing the files and the 300 ms settle)')
print(f'drained {n} events in {r:.1f} s ({n/r:,.0f}/s, includes the collector start and the agent reconnect)')
"
