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
cargo build --release -q -p holdfast-agent -p holdfast-collector
B=$PWD/target/release
d=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill $AP $CP 2>/dev/null; rm -rf "$d"' EXIT
printf 'data_dir = "%s/c"\nlisten = "127.0.0.1:%s"\nhttp_listen = "off"\n' "$d" "$port" > "$d/c.toml"
w=$d/w
[ "$mode" = customers ] && w=$d/Customers
printf 'data_dir = "%s/a"\nwatch = ["%s"]\nhome = "%s"\n' "$d" "$w" "$d" > "$d/a.toml"
python3 - "$w" "$files" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 50}")
    if i % 50 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.txt"), "w") as f:
        f.write("x\n")
PY
"$B/holdfast-collector" serve --config "$d/c.toml" 2> "$d/c.log" & CP=$!
sleep 1
token=$("$B/holdfast-collector" token create --user bench --config "$d/c.toml" 2>/dev/null)
"$B/holdfast-agent" enroll --collector "127.0.0.1:$port" --token-file - --config "$d/a.toml" > /dev/null <<<"$token"
"$B/holdfast-agent" run --config "$d/a.toml" 2> "$d/a.log" & AP=$!
# Until the start-up index is taken and the agent is connected.
for _ in $(seq 1 120); do
  "$B/holdfast-agent" status --json --config "$d/a.toml" 2>/dev/null | grep -q '"files":'"$files" && break
  sleep 1
done
sleep 5
tick=$(getconf CLK_TCK)
s0=$(awk '{print $14+$15}' /proc/$AP/stat); sleep "$secs"; s1=$(awk '{print $14+$15}' /proc/$AP/stat)
"$B/holdfast-agent" status --config "$d/a.toml" 2>/dev/null | grep -i reads || true
echo "agent watching $files files: CPU while idle $(( (s1 - s0) * 1000 / tick )) ms over ${secs} s"
grep -E 'VmRSS|VmHWM' /proc/$AP/status
