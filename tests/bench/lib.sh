# Sourced by the benchmark scripts: builds the release binaries and sets up a collector and an
# agent on loopback in a temporary folder that is removed on exit (with both processes).
#   bench_init               B (binaries), d (the folder), port (a free UDP port)
#   collector_config EXTRA   $d/c.toml: data in $d/c, QUIC on $port, no HTTP, then EXTRA lines
#   agent_config EXTRA       $d/a.toml: data in $d/a, then EXTRA lines (watch = …)
#   start_collector          serve in the background (CP), its log in $d/c.log
#   enroll_agent USER        a token for USER, redeemed by the agent
#   start_agent              run in the background (AP), its log in $d/a.log
#   small_files DIR N        N one-line files under DIR, 50 a folder
#   wait_indexed N SECS      until the agent's index holds N files (at most SECS seconds)
bench_init() {
  cargo build --release -q -p holdfast-agent -p holdfast-collector
  B=$PWD/target/release
  d=$(mktemp -d)
  port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  AP=; CP=
  trap 'kill $AP $CP ${WP:-} 2>/dev/null; rm -rf "$d"' EXIT
}
collector_config() {
  printf 'data_dir = "%s/c"\nlisten = "127.0.0.1:%s"\nhttp_listen = "off"\n%b' "$d" "$port" "${1:-}" > "$d/c.toml"
}
agent_config() {
  printf 'data_dir = "%s/a"\n%b' "$d" "${1:-}" > "$d/a.toml"
}
start_collector() {
  "$B/holdfast-collector" serve --config "$d/c.toml" 2>> "$d/c.log" & CP=$!
}
enroll_agent() {
  local token
  token=$("$B/holdfast-collector" token create --user "$1" --config "$d/c.toml" 2>/dev/null)
  "$B/holdfast-agent" enroll --collector "127.0.0.1:$port" --token-file - --config "$d/a.toml" > /dev/null <<<"$token"
}
start_agent() {
  "$B/holdfast-agent" run --config "$d/a.toml" 2>> "$d/a.log" & AP=$!
}
small_files() {
  python3 - "$1" "$2" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"d{i // 50}")
    if i % 50 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.txt"), "w") as f:
        f.write("x\n")
PY
}
wait_indexed() {
  for _ in $(seq 1 "$2"); do
    "$B/holdfast-agent" status --json --config "$d/a.toml" 2>/dev/null | grep -q '"files":'"$1" && return
    sleep 1
  done
}
