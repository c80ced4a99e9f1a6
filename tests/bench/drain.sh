#!/usr/bin/env bash
# Offline backlog: how fast one agent seals N file events into its spool while the collector
# is away, and how fast the backlog drains once the collector is back (release build).
# Usage: tests/bench/drain.sh [N]   (from the repository root; default N = 20000)
set -euo pipefail
n=${1:-20000}
cargo build --release -q -p holdfast-agent -p holdfast-collector
B=$PWD/target/release
d=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
CP=; AP=
trap 'kill $AP $CP 2>/dev/null || true; rm -rf "$d"' EXIT
printf 'data_dir = "%s/c"\nlisten = "127.0.0.1:%s"\n' "$d" "$port" > "$d/c.toml"
printf 'data_dir = "%s/a"\nwatch = ["%s/w"]\nsettle_ms = 300\n' "$d" "$d" > "$d/a.toml"
mkdir -p "$d/w"
"$B/holdfast-collector" serve --config "$d/c.toml" 2> "$d/c.log" & CP=$!
sleep 1
token=$("$B/holdfast-collector" token create --user bench --config "$d/c.toml" 2>/dev/null)
"$B/holdfast-agent" enroll --collector "127.0.0.1:$port" --token-file - --config "$d/a.toml" > /dev/null <<<"$token"
"$B/holdfast-agent" run --config "$d/a.toml" 2> "$d/a.log" & AP=$!
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
