#!/usr/bin/env bash
# CPU time and RSS of an idle, connected agent watching FILES files (50 per directory).
# Usage: tests/bench/idle.sh [SECONDS] [FILES] [customers]   (from the repository root; builds
# release binaries). Defaults: 60 s, 10,000 files. With `customers`, the files sit in the
# agent's ~/Customers, a folder of the default bulk-read rules, so the read monitor marks every
# directory of them and walks them again every 30 s.
set -euo pipefail
secs=${1:-60}
files=${2:-10000}
mode=${3:-}
. "$(dirname "$0")/lib.sh"
bench_init
collector_config
w=$d/w
[ "$mode" = customers ] && w=$d/Customers
agent_config "watch = [\"$w\"]\nhome = \"$d\"\n"
small_files "$w" "$files"
start_collector
sleep 1
enroll_agent bench
start_agent
# Until the start-up index is taken and the agent is connected.
wait_indexed "$files" 120
sleep 5
tick=$(getconf CLK_TCK)
s0=$(awk '{print $14+$15}' /proc/$AP/stat); sleep "$secs"; s1=$(awk '{print $14+$15}' /proc/$AP/stat)
"$B/holdfast-agent" status --config "$d/a.toml" 2>/dev/null | grep -i reads || true
echo "agent watching $files files: CPU while idle $(( (s1 - s0) * 1000 / tick )) ms over ${secs} s"
grep -E 'VmRSS|VmHWM' /proc/$AP/status
