#!/usr/bin/env bash
# Soak: CYCLES kill -9 cycles, alternating the agent and the collector, at random points
# while a writer puts RATE small CRM exports a second into Downloads (each with distinct
# content). At the end both run again until everything is sent, and every export written is
# looked up at the collector by path and SHA-256: lost = written but never reported, doubled
# = reported more than once. Not part of CI.
# Usage: tests/bench/soak.sh [CYCLES] [RATE]   (defaults 1000 and 20; builds release)
set -euo pipefail
cycles=${1:-1000}
rate=${2:-20}
. "$(dirname "$0")/lib.sh"
bench_init
WP=""
trap 'kill -9 $AP $CP $WP 2>/dev/null; rm -rf "$d"' EXIT
collector_config "max_events_per_sec = 1000000\n"
agent_config "watch = [\"$d/w\"]\nsettle_ms = 300\n"
mkdir -p "$d/w"
start_collector
sleep 1
enroll_agent soak
start_agent
sleep 1
# The writer: RATE exports a second until told to stop, each recorded as "path sha256".
python3 - "$d/w" "$rate" "$d/written" "$d/stop" <<'PY' & WP=$!
import hashlib, os, sys, time
root, rate, manifest, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
i = 0
with open(manifest, "w") as m:
    while not os.path.exists(stop):
        body = "Name,Email,Phone\n" + "".join(
            f"Person {i}-{r},p{i}x{r}@example.com,+1 415 555 {r:04d}\n" for r in range(60))
        p = os.path.join(root, f"report{1700000000000 + i}.csv")
        with open(p + ".part", "w") as f:
            f.write(body)
        os.rename(p + ".part", p)
        m.write(f"{p} {hashlib.sha256(body.encode()).hexdigest()}\n")
        m.flush()
        i += 1
        time.sleep(1 / rate)
PY
t0=$(date +%s)
for c in $(seq 1 "$cycles"); do
  sleep "0.$((RANDOM % 9 + 1))"
  if (( c % 2 )); then
    kill -9 "$AP"; wait "$AP" 2>/dev/null || true; start_agent
  else
    kill -9 "$CP"; wait "$CP" 2>/dev/null || true; start_collector
  fi
  (( c % 100 )) || echo "cycle $c of $cycles ($(( $(date +%s) - t0 )) s)" >&2
done
touch "$d/stop"; wait "$WP" 2>/dev/null || true; WP=""
# Let everything settle and drain: the agent's backlog at 0 and the stored count steady.
last=-1
for _ in $(seq 1 300); do
  n=$("$B/holdfast-collector" events list --json --limit 100000000 --config "$d/c.toml" 2>/dev/null | grep -c '"kind":"file"' || true)
  backlog=$("$B/holdfast-agent" status --json --config "$d/a.toml" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["spool_backlog"])')
  [ "$n" = "$last" ] && [ "$backlog" = 0 ] && break
  last=$n
  sleep 2
done
"$B/holdfast-collector" events list --json --limit 100000000 --config "$d/c.toml" 2>/dev/null > "$d/events.json"
python3 - "$d/written" "$d/events.json" "$cycles" "$d/a.log" <<'PY'
import json, sys, collections
written = [l.split() for l in open(sys.argv[1]) if l.strip()]
seen = collections.Counter()
gaps = 0
for line in open(sys.argv[2]):
    e = json.loads(line)
    if e.get("kind") == "file" and e.get("action") != "deleted" and e.get("sha256"):
        seen[(e["path"], e["sha256"])] += 1
    if e.get("kind") == "agent_gap":
        gaps += 1
lost = sum(1 for p, h in written if seen[(p, h)] == 0)
doubled = sum(1 for p, h in written if seen[(p, h)] > 1)
agent_kills = (int(sys.argv[3]) + 1) // 2
print(f"{len(written)} exports written over {sys.argv[3]} kill -9 cycles "
      f"({agent_kills} of the agent): lost {lost}, doubled {doubled}; "
      f"{gaps} gap notices for {agent_kills} agent crashes")
PY
