#!/usr/bin/env bash
# Classification throughput and peak RSS with every classifier and a 1,000,000-customer
# exact-data-match set: a 200 MiB CSV export and a ~50 MB XLSX export (release build).
# Usage: tests/bench/classify.sh [RUNS]   (from the repository root)
# HOLDFAST_BENCH_DIR=DIR keeps the generated files in DIR and reuses them on the next run.
set -euo pipefail
runs=${1:-5}
cargo build --release -q -p holdfast-agent -p holdfast-collector
B=$PWD/target/release
if [ -n "${HOLDFAST_BENCH_DIR:-}" ]; then
  d=$HOLDFAST_BENCH_DIR; mkdir -p "$d"
else
  d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
fi
[ -f "$d/export.xlsx" ] || python3 - "$d" <<'PY'
import sys, os, zipfile, random
d = sys.argv[1]
random.seed(7)
# The company's customer master list: 1,000,000 customers, email and mobile.
with open(f'{d}/customers.csv', 'w') as f:
    f.write('Company,Email,Mobile\n')
    for i in range(1_000_000):
        f.write(f'Client {i},client{i}@customer{i%997}.com,139{i:08d}\n')
# A 200 MiB CRM export; every other row is a real customer.
with open(f'{d}/export.csv', 'w') as f:
    f.write('First Name,Last Name,Email,Phone,Account Name,Mailing City,Created Date\n')
    i = size = 0
    while size < 200 * 1024 * 1024:
        if i % 2 == 0:
            email, phone = f'client{i}@customer{i%997}.com', f'139 {i//10000 % 10000:04d} {i % 10000:04d}'
        else:
            email, phone = f'ann.lee{i}@other{i%997}.com', f'(415) 555-{i%10000:04d}'
        line = f'Ann{i},Lee{i},{email},{phone},Acme {i%5000} Inc,San Francisco,2024-01-{i%28+1:02d}\n'
        f.write(line); size += len(line); i += 1
# A ~50 MB XLSX export written the way Excel does: shared strings, one sheet.
rows = 1_600_000
with zipfile.ZipFile(f'{d}/export.xlsx', 'w', zipfile.ZIP_DEFLATED) as z:
    z.writestr('[Content_Types].xml', '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
    with z.open('xl/sharedStrings.xml', 'w') as s:
        s.write(b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')
        s.write(b'<si><t>Account Name</t></si><si><t>Contact</t></si><si><t>Email</t></si><si><t>Mobile</t></si>')
        for i in range(rows):
            s.write(f'<si><t>Client {i} Ltd</t></si><si><t>client{i}@customer{i%997}.com</t></si>'.encode())
        s.write(b'</sst>')
    with z.open('xl/worksheets/sheet1.xml', 'w') as w:
        w.write(b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>')
        w.write(b'<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c><c r="D1" t="s"><v>3</v></c></row>')
        for i in range(rows):
            r = i + 2
            w.write(f'<row r="{r}"><c r="A{r}" t="s"><v>{4+2*i}</v></c><c r="B{r}" t="inlineStr"><is><t>Contact {i}</t></is></c><c r="C{r}" t="s"><v>{5+2*i}</v></c><c r="D{r}"><v>139{i:08d}</v></c></row>'.encode())
        w.write(b'</sheetData></worksheet>')
PY
rm -rf "$d/c"
"$B/holdfast-collector" token create --user bench --data-dir "$d/c" > /dev/null 2>&1
"$B/holdfast-collector" edm import "$d/customers.csv" --columns email,mobile --out "$d/set.edm" --data-dir "$d/c" | head -1
for f in export.csv export.xlsx; do
  size=$(stat -c %s "$d/$f")
  cat "$d/$f" > /dev/null
  echo "$f: $size bytes"
  "$B/holdfast-agent" scan --json --edm "$d/set.edm" "$d/$f" | python3 -c "import json,sys; v=json.load(sys.stdin); print('  records', v['records'], 'findings', v['findings'], 'rules', [r['id'] for r in v['rules']])"
  for run in $(seq 1 "$runs"); do
    /usr/bin/time -f "%e %M" "$B/holdfast-agent" scan --json --edm "$d/set.edm" "$d/$f" 2>&1 >/dev/null | tail -1 \
      | awk -v s="$size" -v r="$run" '{printf "  run %d: %.2f s, %.0f MB/s, peak RSS %.1f MiB\n", r, $1, s/1e6/$1, $2/1024}'
  done
done
