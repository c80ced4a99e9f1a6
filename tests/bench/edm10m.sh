#!/usr/bin/env bash
# A 10 M-customer set, end to end: a seeded master list of 10,000,000 customers (company,
# email, mobile) is imported, distributed to a real agent in signed 2 MiB pieces, and
# matched against an export of 1,000 of them and 500 strangers. Prints the import's time and
# peak memory, the time until the agent holds the set, the agent's memory before and after
# (VmRSS) and at its peak (VmHWM), the collector's after serving it, and the customers the
# agent counted. Release build.
# Usage: tests/bench/edm10m.sh [CUSTOMERS]   (default 10000000)
set -euo pipefail
n=${1:-10000000}
. "$(dirname "$0")/lib.sh"
bench_init
collector_config
agent_config "watch = [\"$d/w\"]\nheartbeat_ms = 1000\n"
mkdir -p "$d/w"
python3 - "$d" "$n" <<'PY'
import random, sys
d, n = sys.argv[1], int(sys.argv[2])
random.seed(16)
def mobile(i):
    # Distinct mobiles spread over every 13x-19x prefix.
    return f"1{3 + i % 7}{(i * 7919) % 10**9:09d}"
with open(f"{d}/customers.csv", "w", buffering=1 << 20) as f:
    f.write("Company,Email,Mobile\n")
    for i in range(n):
        f.write(f"Customer {i} Ltd,buyer{i}@customer{i % 5000}.example.com,{mobile(i)}\n")
with open(f"{d}/export.csv", "w") as f:
    f.write("Account Name,Email,Phone\n")
    for k in range(1000):
        i = random.randrange(n)
        f.write(f"Customer {i} Ltd,buyer{i}@customer{i % 5000}.example.com,{mobile(i)}\n")
    for k in range(500):
        f.write(f"Stranger {k},someone{k}@elsewhere.example.org,+1 415 555 {k:04d}\n")
PY
echo "master list: $n customers, $(du -m "$d/customers.csv" | cut -f1) MiB"
start_collector
sleep 1
enroll_agent bench
start_agent
sleep 3
kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
echo "agent before the set: VmRSS $(( $(kib $AP VmRSS) / 1024 )) MiB; collector VmRSS $(( $(kib $CP VmRSS) / 1024 )) MiB"
t0=$(date +%s%N)
/usr/bin/time -f "%e s %M KiB" -o "$d/import.time" \
  "$B/holdfast-collector" edm import "$d/customers.csv" --columns email,mobile \
  --out "$d/set.edm" --json --config "$d/c.toml" > "$d/import.json" 2> /dev/null
t1=$(date +%s%N)
version=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["version"])' "$d/import.json")
echo "import: $(( (t1 - t0) / 1000000 )) ms wall, peak $(awk '{print int($3/1024)}' "$d/import.time") MiB; set $version, $(( $(stat -c %s "$d/set.edm") / 1048576 )) MiB held file"
until "$B/holdfast-agent" status --json --config "$d/a.toml" 2>/dev/null | grep -q "\"edm_version\":\"$version\""; do
  sleep 0.05
done
t2=$(date +%s%N)
sleep 2
echo "distributed: $(( (t2 - t1) / 1000000 )) ms from the end of the import to the agent holding it"
echo "collector after serving it: VmRSS $(( $(kib $CP VmRSS) / 1024 )) MiB, peak VmHWM $(( $(kib $CP VmHWM) / 1024 )) MiB"
echo "agent with the set: VmRSS $(( $(kib $AP VmRSS) / 1024 )) MiB, peak VmHWM $(( $(kib $AP VmHWM) / 1024 )) MiB"
t3=$(date +%s%N)
cp "$d/export.csv" "$d/w/.accounts.tmp" && mv "$d/w/.accounts.tmp" "$d/w/accounts.csv"
until "$B/holdfast-collector" alerts list --json --config "$d/c.toml" 2>/dev/null | grep -q 'customer-data.real-customers'; do
  sleep 0.02
done
t4=$(date +%s%N)
counted=$("$B/holdfast-collector" events list --json --config "$d/c.toml" 2>/dev/null \
  | python3 -c 'import json,sys
for l in sys.stdin:
    e = json.loads(l)
    if e.get("path", "").endswith("accounts.csv"):
        print(e.get("findings", {}).get("edm", 0)); break')
echo "export of 1000 customers + 500 strangers: real-customers alert in $(( (t4 - t3) / 1000000 )) ms; the agent counted $counted customers"
offline=$("$B/holdfast-agent" scan --json --edm "$d/set.edm" "$d/w/accounts.csv" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["findings"].get("edm", 0))')
echo "offline scan with the held file: $offline customers"
