#!/usr/bin/env bash
# The classifier's single pass against SHA-256 on the same file, in the same run: the 200 MiB
# CSV export of tests/bench/classify.sh, scanned with its 1,000,000-customer set, and
# `openssl dgst -sha256` of the same file, interleaved (one of each per round, page cache
# warm), median of RUNS. Prints both medians and their ratio (issue 18: at most 3x).
# Usage: tests/bench/ratio.sh [RUNS]   (from the repository root; RUNS defaults to 5)
# HOLDFAST_BENCH_DIR=DIR keeps the generated files in DIR and reuses them on the next run.
set -euo pipefail
runs=${1:-5}
d=${HOLDFAST_BENCH_DIR:-$(mktemp -d)}
[ -n "${HOLDFAST_BENCH_DIR:-}" ] || trap 'rm -rf "$d"' EXIT
HOLDFAST_BENCH_DIR=$d tests/bench/classify.sh 0 > /dev/null
B=$PWD/target/release
f=$d/export.csv
cat "$f" > /dev/null
t() { /usr/bin/time -f "%e" "$@" 2>&1 >/dev/null | tail -1; }
hash=() scan=() plain=()
for run in $(seq 1 "$runs"); do
  hash+=("$(t openssl dgst -sha256 "$f")")
  scan+=("$(t "$B/holdfast-agent" scan --json --edm "$d/set.edm" "$f")")
  plain+=("$(t "$B/holdfast-agent" scan --json "$f")")
  echo "round $run: sha256 ${hash[-1]} s, scan with the set ${scan[-1]} s, scan without ${plain[-1]} s"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
h=$(median "${hash[@]}"); s=$(median "${scan[@]}"); p=$(median "${plain[@]}")
size=$(stat -c %s "$f")
awk -v h="$h" -v s="$s" -v p="$p" -v z="$size" 'BEGIN {
  printf "median of %d: sha256 %.2f s (%.0f MB/s); scan with the set %.2f s (%.0f MB/s), %.2fx sha256; without %.2f s (%.0f MB/s), %.2fx\n",
    '"$runs"', h, z/1e6/h, s, z/1e6/s, s/h, p, z/1e6/p, p/h }'
