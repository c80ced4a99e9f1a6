#!/usr/bin/env bash
# CPU time and RSS of an idle, connected agent watching 10,000 files in 201 directories.
# Usage: tests/bench/idle.sh [SECONDS]   (from the repository root; builds release binaries)
set -euo pipefail
secs=${1:-60}
cargo build --release -q -p holdfast-agent -p holdfast-collector
B=$PWD/target/release
d=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
trap 'kill $AP $CP 2>/dev/null; rm -rf "$d"' EXIT
printf 'data_dir = "%s/c"\nlisten = "127.0.0.1:%s"\n' "$d" "$port" > "$d/c.toml"
printf 'data_dir = "%s/a"\nwatch = ["%s/w"]\n' "$d" "$d" > "$d/a.toml"
for i in $(seq 1 200); do mkdir -p "$d/w/d$i"; for j in $(seq 1 50); do echo x > "$d/w/d$i/f$j.txt"; done; done
"$B/holdfast-collector" serve --config "$d/c.toml" 2> "$d/c.log" & CP=$!
sleep 1
token=$("$B/holdfast-collector" token create --user bench --config "$d/c.toml" 2>/dev/null)
"$B/holdfast-agent" enroll --collector "127.0.0.1:$port" --token "$token" --config "$d/a.toml" > /dev/null
"$B/holdfast-agent" run --config "$d/a.toml" 2> "$d/a.log" & AP=$!
sleep 5
tick=$(getconf CLK_TCK)
s0=$(awk '{print $14+$15}' /proc/$AP/stat); sleep "$secs"; s1=$(awk '{print $14+$15}' /proc/$AP/stat)
echo "agent CPU while idle: $(( (s1 - s0) * 1000 / tick )) ms over ${secs} s"
grep -E 'VmRSS|VmHWM' /proc/$AP/status
