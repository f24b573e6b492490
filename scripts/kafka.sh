#!/usr/bin/env bash
# Apache Kafka without Docker: a pinned release's broker artifacts from Maven Central (resolved with Maven into
# a local cache), one combined broker+controller in KRaft mode on free loopback ports, data in a folder.
#
#   scripts/kafka.sh start   [--dir DIR]   start (or find running) and print KAFKA_BOOTSTRAP=127.0.0.1:PORT
#   scripts/kafka.sh stop    [--dir DIR]   SIGTERM and wait (data kept)
#   scripts/kafka.sh kill    [--dir DIR]   SIGKILL (data kept: `start` brings it back on the same port)
#   scripts/kafka.sh pause | resume        SIGSTOP / SIGCONT (a broker that hangs)
#   scripts/kafka.sh restart               kill -9, then start with the data kept
#   scripts/kafka.sh status | bootstrap    is it up; print the bootstrap address
#   scripts/kafka.sh wipe                  stop and delete the data folder
#
# DIR defaults to $KAFKA_DIR or target/apache-kafka. KAFKA_VERSION (default 3.9.1) picks the release;
# artifacts are cached in ${KAFKA_CACHE:-~/.cache/dispatch-trigger}/kafka-VERSION. Extra broker properties:
# a file DIR/extra.properties is appended when the storage is formatted, and FORMAT_ARGS is passed to the storage
# tool (e.g. --add-scram 'SCRAM-SHA-512=[name=svc,password=...]'). KAFKA_SASL_SSL=1 adds a SASL_SSL listener on
# a port of its own, written to DIR/sasl_ssl_port; its TLS and SASL settings come from DIR/extra.properties
# (tests/kafka_security.rs generates them). KAFKA_EXTRA_JVM_OPTS is added to the broker's java command line.
# Needs java (17) and mvn. Concurrent callers (parallel test binaries) are serialised by a lock.
set -euo pipefail

KAFKA_VERSION=${KAFKA_VERSION:-3.9.1}
SLF4J_VERSION=1.7.36
cmd=${1:-}
shift || true
dir=${KAFKA_DIR:-}
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${dir:-$root/target/apache-kafka}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
cache=${KAFKA_CACHE:-$HOME/.cache/dispatch-trigger}/kafka-$KAFKA_VERSION

say() { printf 'kafka.sh: %s\n' "$*" >&2; }

resolve() {
  if [ -f "$cache/.complete" ]; then return; fi
  command -v java >/dev/null || { say "java is not installed (a JDK 17 is needed)"; exit 3; }
  command -v mvn >/dev/null || { say "mvn is not installed (Maven resolves the broker from Maven Central)"; exit 3; }
  say "resolving Apache Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13) from Maven Central into $cache"
  mkdir -p "$cache"
  cat > "$cache/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.dispatch-trigger</groupId>
  <artifactId>apache-kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-reload4j</artifactId><version>$SLF4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  (cd "$cache" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime) >&2
  cat > "$cache/log4j.properties" <<'LOG'
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=WARN
LOG
  touch "$cache/.complete"
}

# The garbage collector as Kafka's own start script (kafka-run-class.sh) sets it: G1 aiming at 20 ms pauses
# rather than its default 200 ms (with the default, young collections paused this broker for 12-27 ms every
# ~20 s under `dispatch-trigger-bench kafka`). Pauses are logged to DIR/gc.log.
GC_OPTS="-XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent"

java_run() {
  java -Xms256m -Xmx768m $GC_OPTS -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$cache/log4j.properties" -cp "$cache/lib/*" "$@"
}

pid() { [ -f "$dir/pid" ] && cat "$dir/pid"; }
alive() { local p; p=$(pid) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null; }
bootstrap() { echo "127.0.0.1:$(cat "$dir/port")"; }

# Ports as the tests take theirs (tests/common/unique.rs): below the kernel's ephemeral range (so no outgoing
# connection takes a broker's port while it is down and restarted on it), and a lock file per port that the
# broker holds for as long as it runs (it inherits the descriptors), so no test process picks it meanwhile.
port_locks=${TMPDIR:-/tmp}/dt-test-ports
held=" "

# Hold port $1's lock (from now until the broker exits); false if another process holds it.
hold_port() {
  case "$held" in *" $1 "*) return 0 ;; esac
  mkdir -p "$port_locks"
  local fd
  exec {fd}>"$port_locks/$1.lock"
  if flock -n "$fd"; then held="$held$1 "; return 0; fi
  exec {fd}>&-
  return 1
}

# A port nothing listens on and no test process holds, held from now on: in $picked.
pick_port() {
  local p
  for _ in $(seq 1 1000); do
    p=$((20000 + RANDOM % 12000))
    case "$held" in *" $p "*) continue ;; esac
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then continue; fi
    if hold_port "$p"; then picked=$p; return; fi
  done
  say "no free port in 20000-31999"
  exit 1
}

up() {
  # The broker answers on its port (a TCP connect), and its log says it started.
  local port; port=$(cat "$dir/port")
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && grep -q 'Kafka Server started' "$dir/server.log" 2>/dev/null
}

format_storage() {
  local port cport
  pick_port; port=$picked
  pick_port; cport=$picked
  echo "$port" > "$dir/port"
  echo "$port $cport" > "$dir/ports"
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport" advertised="PLAINTEXT://127.0.0.1:$port"
  if [ -n "${KAFKA_SASL_SSL:-}" ]; then
    local sport; pick_port; sport=$picked
    echo "$sport" > "$dir/sasl_ssl_port"
    echo "$port $cport $sport" > "$dir/ports"
    listeners="$listeners,SASL_SSL://127.0.0.1:$sport"; advertised="$advertised,SASL_SSL://127.0.0.1:$sport"
  fi
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$dir/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
message.max.bytes=1048588
log.retention.check.interval.ms=60000
PROPS
  if [ -f "$dir/extra.properties" ]; then cat "$dir/extra.properties" >> "$dir/server.properties"; fi
  local id; id=$(java_run kafka.tools.StorageTool random-uuid | tail -1)
  java_run kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" ${FORMAT_ARGS:-} > "$dir/format.log" 2>&1 \
    || { say "formatting the storage failed:"; cat "$dir/format.log" >&2; exit 1; }
}

start() {
  resolve
  if alive && up; then bootstrap; return; fi
  if alive; then kill -9 "$(pid)" 2>/dev/null || true; fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    rm -rf "$dir/data"
    format_storage
  fi
  local p
  for p in $(cat "$dir/ports" 2>/dev/null); do
    hold_port "$p" || say "warning: port $p is held by another process (a test picked it while the broker was down?)"
  done
  say "starting Apache Kafka $KAFKA_VERSION (KRaft, broker+controller) at $(bootstrap), data in $dir/data"
  : > "$dir/server.log"
  # setsid: the broker outlives the shell (and the test) that started it; stop/kill end it. It must not
  # inherit the lock (fd 9), or every later `start` would wait for the broker to exit.
  setsid bash -c "exec java -Xms256m -Xmx768m $GC_OPTS -Xlog:gc:file='$dir/gc.log':uptime,time:filecount=2,filesize=10M \
    -Djava.awt.headless=true ${KAFKA_EXTRA_JVM_OPTS:-} \
    -Dlog4j.configuration=file:$cache/log4j.properties -cp '$cache/lib/*' kafka.Kafka '$dir/server.properties' \
    >>'$dir/server.log' 2>&1" < /dev/null 9>&- &
  echo $! > "$dir/pid"
  for _ in $(seq 1 600); do
    if up; then bootstrap; return; fi
    if ! alive; then say "the broker exited; last lines of $dir/server.log:"; tail -30 "$dir/server.log" >&2; exit 1; fi
    sleep 0.1
  done
  say "the broker did not start within 60 s; see $dir/server.log"
  exit 1
}

with_lock() {
  exec 9>"$dir/.lock"
  flock 9
  "$@"
}

case "$cmd" in
  start) with_lock start | sed 's/^/KAFKA_BOOTSTRAP=/' ;;
  bootstrap) bootstrap ;;
  status) if alive && up; then echo "up at $(bootstrap) (pid $(pid))"; else echo "down"; exit 1; fi ;;
  stop)
    if alive; then kill "$(pid)"; for _ in $(seq 1 300); do alive || break; sleep 0.1; done; fi
    alive && kill -9 "$(pid)" 2>/dev/null || true ;;
  kill) if alive; then kill -9 "$(pid)"; for _ in $(seq 1 100); do alive || break; sleep 0.05; done; fi ;;
  pause) alive && kill -STOP "$(pid)" ;;
  resume) alive && kill -CONT "$(pid)" ;;
  restart) "$0" kill --dir "$dir"; "$0" start --dir "$dir" ;;
  wipe) "$0" stop --dir "$dir"; rm -rf "$dir" ;;
  *) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
