#!/usr/bin/env bash
# Peer comparison: Redis GEOSEARCH against the camera index on the same cameras and the same queries.
#
# 1. The index bench exports its seeded layout and queries (BENCH_EXPORT_DIR) and times rstar's 250 m query.
# 2. A local redis-server (Debian's redis-server; installed here if missing) loads the same cameras with
#    GEOADD, then answers the same 250 m GEOSEARCH queries, pipelined through redis-cli --pipe (server
#    throughput with the least client overhead), repeated to ROUNDS x 1000 queries.
# Prints both throughputs and their ratio. Usage: benches/redis_geosearch.sh [N=1000000] [ROUNDS=100]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-100}
PORT=6391
DIR=out/peer
if ! command -v redis-server >/dev/null; then
  apt-get update -qq && apt-get install -y -qq redis-server redis-tools
fi
mkdir -p "$DIR"

echo "== rstar (criterion, $N cameras)"
BENCH_EXPORT_DIR=$DIR BENCH_SIZES=$N cargo bench --locked --bench index -- "radius_250m/$N/rstar" 2>&1 \
  | tee "$DIR/criterion.txt" | grep -A2 "radius_250m/$N/rstar" | grep -E "time:|thrpt:" || true
rstar_us=$(grep -A1 "^radius_250m/$N/rstar" "$DIR/criterion.txt" | grep -oE 'time: +\[[0-9.]+ [µu]s [0-9.]+' | awk '{print $4}')

echo "== Redis GEOSEARCH ($N cameras)"
redis-server --port $PORT --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$DIR/redis.log"
trap 'redis-cli -p $PORT shutdown nosave >/dev/null 2>&1 || true' EXIT
for i in $(seq 50); do redis-cli -p $PORT ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p $PORT del cams >/dev/null
python3 - "$DIR/cameras-$N.txt" <<'PY' | redis-cli -p $PORT --pipe >/dev/null
import sys
out = sys.stdout
def cmd(*a):
    out.write("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a))
batch = []
for i, line in enumerate(open(sys.argv[1])):
    lon, lat = line.split()
    batch += [lon, lat, "cam-%08d" % i]
    if len(batch) >= 3000:
        cmd("GEOADD", "cams", *batch); batch = []
if batch:
    cmd("GEOADD", "cams", *batch)
PY
echo "loaded $(redis-cli -p $PORT zcard cams) cameras"
python3 - "$DIR/queries-$N.txt" "$ROUNDS" > "$DIR/geosearch.resp" <<'PY'
import sys
qs = [l.split() for l in open(sys.argv[1])]
out = sys.stdout
for _ in range(int(sys.argv[2])):
    for lon, lat in qs:
        a = ["GEOSEARCH", "cams", "FROMLONLAT", lon, lat, "BYRADIUS", "250", "m", "ASC"]
        out.write("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a))
PY
queries=$((ROUNDS * $(wc -l < "$DIR/queries-$N.txt")))
start=$(date +%s.%N)
redis-cli -p $PORT --pipe < "$DIR/geosearch.resp" > "$DIR/geosearch.out"
end=$(date +%s.%N)
python3 - "$start" "$end" "$queries" "${rstar_us:-0}" <<'PY'
import sys
start, end, n, rstar_us = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
redis = n / (end - start)
print(f"redis GEOSEARCH 250 m: {n} queries in {end-start:.2f} s = {redis:,.0f} queries/s")
if rstar_us > 0:
    ours = 1e6 / rstar_us
    print(f"rstar radius 250 m: {rstar_us} us/query = {ours:,.0f} queries/s on one core")
    print(f"ratio: {ours / redis:.1f}x")
PY
