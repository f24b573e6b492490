#!/usr/bin/env bash
# The camera index next to its peers, in one run, on the same cameras and the same queries (250 m radius,
# nearest first): Redis GEOSEARCH, Tile38 NEARBY, PostGIS ST_DWithin with a GiST index.
#
# 1. The index bench exports its seeded layout and 1,000 queries (BENCH_EXPORT_DIR) and times the index's
#    answer in the form a peer gives it (ids in distance order: `radius_250m/N/rstar_ids`, one core) and its
#    memory (whole registry, and the spatial structure alone).
# 2. Redis (Debian's redis-server) loads the cameras with GEOADD and answers the queries pipelined through
#    redis-cli --pipe (server throughput with the least client overhead); memory = used_memory growth.
# 3. Tile38 (`go install github.com/tidwall/tile38/cmd/tile38-server@$TILE38_VERSION` from the Go module
#    proxy) loads them with SET ... POINT and answers NEARBY ... POINT lat lon 250, pipelined the same way;
#    memory = heap_size growth. Where the Go proxy refuses the module, the row says so.
# 4. PostGIS (Debian's postgresql + postgis, a throwaway cluster on a free port) loads them into a
#    geography(Point) table with a GiST index and answers every query server side in one statement
#    (LATERAL ST_DWithin ... ORDER BY distance): no client round trip in the figure; memory =
#    pg_total_relation_size (table + index).
# Prints a Markdown table (q/s, µs per query, bytes per point). Usage: benches/peers.sh [N=1000000] [ROUNDS=20]
# CI runs the smallest size: benches/peers.sh 100000 2.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
ROUNDS=${2:-20}
TILE38_VERSION=${TILE38_VERSION:-v1.36.0}
DIR=out/peer
mkdir -p "$DIR"
need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "${@:2}" >/dev/null; }; }
need redis-server redis-server redis-tools
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$PG_BIN" ] || ! ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq postgresql postgis >/dev/null
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
fi
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); }
# "q/s | µs per query" of N queries in T seconds.
per_s() { python3 -c "import sys; n,t=float(sys.argv[1]),float(sys.argv[2]); print(f'{n/t:,.0f} | {t/n*1e6:.2f}')" "$@"; }
since() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$(date +%s.%N)"; }

echo "== the index ($N cameras)"
BENCH_EXPORT_DIR=$DIR BENCH_SIZES=$N cargo bench --locked --bench index -- "radius_250m/$N/rstar_ids" 2>&1 \
  | tee "$DIR/criterion.txt" | grep -E "^index n=|time:" || true
us=$(grep -A1 "^radius_250m/$N/rstar_ids" "$DIR/criterion.txt" | grep -oE 'time: +\[[0-9.]+ [µu]s [0-9.]+' | awk '{print $4}')
reg_b=$(grep -oE 'registry bytes/camera rstar [0-9.]+' "$DIR/criterion.txt" | awk '{print $4}')
spatial_b=$(grep -oE 'spatial bytes/camera rstar [0-9.]+' "$DIR/criterion.txt" | awk '{print $4}')
ours_qps=$(python3 -c "print(f'{1e6/float(\"$us\"):,.0f}')")
row "dispatch-trigger index (rstar buckets, one core, in process)" "$ours_qps" "$us" \
  "$reg_b (whole registry; spatial alone $spatial_b)" "ids in distance order"
nq=$((ROUNDS * $(wc -l < "$DIR/queries-$N.txt")))

# A RESP stream of one command per line of stdin (words separated by spaces).
resp() { python3 -c '
import sys
out = sys.stdout
for line in sys.stdin:
    a = line.split()
    out.write("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a))'; }
repeat() { for _ in $(seq "$ROUNDS"); do cat "$DIR/queries-$N.txt"; done; }

as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

echo "== Redis GEOSEARCH"
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
RPORT=$(free_port)
redis-server --port $RPORT --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "$DIR/redis.log"
cleanup() {
  redis-cli -p $RPORT shutdown nosave >/dev/null 2>&1 || true
  [ -n "${T38_PID:-}" ] && kill "$T38_PID" 2>/dev/null || true
  if [ -n "${PGDATA:-}" ]; then
    as_pg "'$PG_BIN/pg_ctl' -D '$PGDATA' -m immediate stop" >/dev/null 2>&1 || true
    rm -rf "$PGDATA"
  fi
}
trap cleanup EXIT
for _ in $(seq 50); do redis-cli -p $RPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p $RPORT flushall >/dev/null
mem0=$(redis-cli -p $RPORT info memory | grep -oE '^used_memory:[0-9]+' | cut -d: -f2)
awk '{ printf "GEOADD cams %s %s cam-%08d\n", $1, $2, NR-1 }' "$DIR/cameras-$N.txt" | resp | redis-cli -p $RPORT --pipe >/dev/null
mem1=$(redis-cli -p $RPORT info memory | grep -oE '^used_memory:[0-9]+' | cut -d: -f2)
echo "loaded $(redis-cli -p $RPORT zcard cams) cameras"
repeat | awk '{ printf "GEOSEARCH cams FROMLONLAT %s %s BYRADIUS 250 m ASC\n", $1, $2 }' | resp > "$DIR/geosearch.resp"
start=$(date +%s.%N)
redis-cli -p $RPORT --pipe < "$DIR/geosearch.resp" > /dev/null
t=$(since "$start")
row "Redis $(redis-server --version | grep -oE 'v=[0-9.]+' | cut -d= -f2) GEOSEARCH (pipelined)" \
  "$(per_s "$nq" "$t" | cut -d'|' -f1)" "$(per_s "$nq" "$t" | cut -d'|' -f2 | tr -d ' ')" \
  "$(( (mem1 - mem0) / N ))" "members in distance order"

echo "== Tile38 NEARBY"
T38=$(go env GOPATH)/bin/tile38-server
if [ ! -x "$T38" ] && ! go install "github.com/tidwall/tile38/cmd/tile38-server@$TILE38_VERSION" 2> "$DIR/tile38-install.log"; then
  why=$(grep -oE '40[0-9] [A-Za-z]+' "$DIR/tile38-install.log" | head -1)
  echo "Tile38 unavailable: go install failed ($why): $(tail -1 "$DIR/tile38-install.log")"
  row "Tile38 $TILE38_VERSION NEARBY" "—" "—" "—" "not built: the Go module proxy answered ${why:-an error} for github.com/tidwall/tile38"
else
  TPORT=$(free_port)
  "$T38" -p $TPORT -d "$DIR/tile38-data" -q > "$DIR/tile38.log" 2>&1 &
  T38_PID=$!
  for _ in $(seq 100); do redis-cli -p $TPORT ping >/dev/null 2>&1 && break; sleep 0.1; done
  heap() { redis-cli -p $TPORT server | python3 -c 'import sys,json; print(json.loads(sys.stdin.read())["stats"]["heap_size"])' 2>/dev/null || echo 0; }
  h0=$(heap)
  awk '{ printf "SET cams cam-%08d POINT %s %s\n", NR-1, $2, $1 }' "$DIR/cameras-$N.txt" | resp | redis-cli -p $TPORT --pipe >/dev/null
  redis-cli -p $TPORT gc >/dev/null || true
  h1=$(heap)
  repeat | awk '{ printf "NEARBY cams IDS POINT %s %s 250\n", $2, $1 }' | resp > "$DIR/nearby.resp"
  start=$(date +%s.%N)
  redis-cli -p $TPORT --pipe < "$DIR/nearby.resp" > /dev/null
  t=$(since "$start")
  row "Tile38 $TILE38_VERSION NEARBY (pipelined)" "$(per_s "$nq" "$t" | cut -d'|' -f1)" \
    "$(per_s "$nq" "$t" | cut -d'|' -f2 | tr -d ' ')" "$(( (h1 - h0) / N ))" "ids in distance order"
fi

echo "== PostGIS ST_DWithin"
PGDATA=$(mktemp -d /tmp/peers-pg.XXXX)
chown postgres "$PGDATA" 2>/dev/null || true
PGPORT=$(free_port)
as_pg "'$PG_BIN/initdb' -D '$PGDATA' -A trust -U postgres >/dev/null"
as_pg "'$PG_BIN/pg_ctl' -D '$PGDATA' -o '-p $PGPORT -k /tmp -c shared_buffers=1GB -c jit=off' -l '$PGDATA/log' -w start >/dev/null"
psql_() { psql -h /tmp -p $PGPORT -U postgres -qAt "$@"; }
cp "$DIR/cameras-$N.txt" "$DIR/queries-$N.txt" /tmp/
chmod a+r "/tmp/cameras-$N.txt" "/tmp/queries-$N.txt"
psql_ <<SQL
CREATE EXTENSION postgis;
CREATE TABLE raw (lon float8, lat float8);
COPY raw FROM '/tmp/cameras-$N.txt' (FORMAT text, DELIMITER ' ');
CREATE TABLE cams AS SELECT row_number() OVER () - 1 AS id, ST_MakePoint(lon, lat)::geography AS geog FROM raw;
CREATE INDEX cams_geog ON cams USING gist (geog);
CREATE TABLE qraw (lon float8, lat float8);
COPY qraw FROM '/tmp/queries-$N.txt' (FORMAT text, DELIMITER ' ');
CREATE TABLE queries AS SELECT ST_MakePoint(lon, lat)::geography AS geog FROM qraw, generate_series(1, $ROUNDS);
VACUUM ANALYZE cams; VACUUM ANALYZE queries;
SQL
bytes=$(psql_ -c "SELECT pg_total_relation_size('cams')")
# Warm the cache once, then time every query in one statement, server side.
psql_ -c "SELECT count(*) FROM (SELECT geog FROM queries LIMIT 1000) q, LATERAL (SELECT id FROM cams c WHERE ST_DWithin(c.geog, q.geog, 250, false) ORDER BY ST_Distance(c.geog, q.geog, false)) x" >/dev/null
ms=$(psql_ -c '\timing on' -c "SELECT count(*) FROM queries q, LATERAL (SELECT id FROM cams c WHERE ST_DWithin(c.geog, q.geog, 250, false) ORDER BY ST_Distance(c.geog, q.geog, false)) x" \
  | grep -oE 'Time: [0-9.]+' | awk '{print $2}')
t=$(python3 -c "print($ms / 1000)")
pgv=$(psql_ -c "SELECT split_part(postgis_lib_version(), ' ', 1)")
row "PostGIS $pgv ST_DWithin + GiST (server side, one statement)" "$(per_s "$nq" "$t" | cut -d'|' -f1)" \
  "$(per_s "$nq" "$t" | cut -d'|' -f2 | tr -d ' ')" "$((bytes / N))" "ids in distance order"

echo
echo "$N cameras, $nq queries of 250 m (about $(grep -oE '[0-9.]+ cameras per 250 m query' "$DIR/criterion.txt" | head -1))"
echo
echo "| engine | queries/s | µs per query | bytes per point | answer |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
