#!/usr/bin/env bash
# Slow files: how long an export takes from its write to a committed alert, alone and
# written 100 ms after a 16 GiB sparse file and three CPU-heavy workbooks (100,000 rows of
# numbers each). RUNS runs of each, interleaved; prints the medians. Release build, default
# agent settings (settle 1 s, two workers and a slow lane).
# Usage: tests/bench/slow.sh [RUNS]   (default 5)
set -euo pipefail
runs=${1:-5}
. "$(dirname "$0")/lib.sh"
bench_init
collector_config
agent_config "watch = [\"$d/w\"]\n"
mkdir -p "$d/w" "$d/src"
start_collector
sleep 1
enroll_agent bench
start_agent
sleep 2
python3 - "$d/src" <<'PY'
import random, sys, zipfile
random.seed(7)
for i in range(3):
    with zipfile.ZipFile(f"{sys.argv[1]}/book{i}.xlsx", "w", zipfile.ZIP_DEFLATED) as z:
        rows = "".join(
            f'<row r="{r}">' + "".join(f'<c r="{chr(65 + c)}{r}"><v>{random.randrange(10**6)}</v></c>' for c in range(8)) + "</row>"
            for r in range(1, 100001))
        z.writestr("xl/worksheets/sheet1.xml", f"<worksheet><sheetData>{rows}</sheetData></worksheet>")
with open(f"{sys.argv[1]}/export.csv", "w") as f:
    f.write("Name,Email,Phone\n")
    for r in range(200):
        f.write(f"Person {r},p{r}@example.com,+1 415 555 {r:04d}\n")
PY
# Writes the export under a new name and prints the ms until its alert is listed.
measure() {
  local name="report$1.csv"
  local t0; t0=$(date +%s%N)
  cp "$d/src/export.csv" "$d/w/.$name.tmp" && mv "$d/w/.$name.tmp" "$d/w/$name"
  until "$B/holdfast-collector" alerts list --json --config "$d/c.toml" 2>/dev/null | grep -q "$name"; do
    sleep 0.02
  done
  echo $(( ($(date +%s%N) - t0) / 1000000 ))
}
alone=(); behind=()
for i in $(seq 1 "$runs"); do
  alone+=("$(measure "17000000${i}0001")")
  truncate -s 16G "$d/w/disk-$i.img"
  for b in 0 1 2; do cp "$d/src/book$b.xlsx" "$d/w/pipeline-$i-$b.xlsx"; done
  sleep 0.1
  behind+=("$(measure "17000000${i}0002")")
  sleep 20 # let the slow lane finish before the next pair
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "export alone: median $(median "${alone[@]}") ms (${alone[*]})"
echo "export behind a 16 GiB file and 3 heavy workbooks: median $(median "${behind[@]}") ms (${behind[*]})"
