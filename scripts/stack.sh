#!/usr/bin/env bash
# FundedFlow's local service stack for machines without Docker: Kafka (KRaft,
# single node), PostgreSQL, Redis and stripe-mock as plain processes.
# docker-compose.yml is the same stack for people who do have Docker; keep the
# versions and ports of both in step.
#
#   scripts/stack.sh up     [service...]          start (idempotent) and wait until each answers
#   scripts/stack.sh down   [--purge] [service...] stop; --purge also deletes their state
#   scripts/stack.sh status [service...]          exit 0 only when every one answers
#   scripts/stack.sh env                          export lines for the app and the tests
#   scripts/stack.sh kafka-topics ARGS...         Kafka's TopicCommand against the local broker
#   scripts/stack.sh kafka-console-producer ARGS... / kafka-console-consumer ARGS...
#
# Services: kafka postgres redis stripe-mock (default: all of them).
# Everything a run writes lives in the state dir (data, logs/*.log, run/*.pid);
# downloads and builds live in the cache dir and survive `down --purge`.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/.." && pwd)
STATE=${FUNDEDFLOW_STACK_DIR:-$REPO/.stack}
[[ $STATE == /* ]] || STATE=$PWD/$STATE # daemons chdir, so relative paths would break
CACHE=${FUNDEDFLOW_CACHE:-$HOME/.cache/fundedflow}
LOGS=$STATE/logs
RUN=$STATE/run

KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-9093}
POSTGRES_PORT=${POSTGRES_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
STRIPE_MOCK_PORT=${STRIPE_MOCK_PORT:-12111}
STRIPE_MOCK_HTTPS_PORT=${STRIPE_MOCK_HTTPS_PORT:-12112}

# The pom is the single place where the Kafka version is pinned.
KAFKA_POM=$SCRIPT_DIR/kafka/pom.xml
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_POM")
KAFKA_HOME=$CACHE/kafka-$KAFKA_VERSION
# Same tag as the stripe/stripe-mock image in docker-compose.yml.
STRIPE_MOCK_VERSION=v0.203.0
# One dir per version, so bumping the pin can never run a stale binary.
STRIPE_MOCK_BIN=$CACHE/stripe-mock-$STRIPE_MOCK_VERSION/bin/stripe-mock

ALL_SERVICES=(kafka postgres redis stripe-mock)
KAFKA_READY_TIMEOUT=90 # ~2 s normally, ~8 s after a kill -9; slack for a loaded CI box
OTHER_READY_TIMEOUT=60
STOP_TIMEOUT=30 # Kafka's controlled shutdown is the slow one

# Non-login shells (cron, CI, IDEs) often lack the Go install dir.
case ":$PATH:" in *:/usr/local/go/bin:*) ;; *) PATH=$PATH:/usr/local/go/bin ;; esac
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

# ---------------------------------------------------------------- helpers

say() { printf '%s\n' "$*"; }

die() {
	printf 'stack: error: %s\n' "$1" >&2
	local log
	for log in "${@:2}"; do
		[[ -s $log ]] || continue
		printf -- '--- last lines of %s ---\n' "$log" >&2
		tail -n 30 "$log" >&2
	done
	exit 1
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Microsecond clock from bash itself: no fork, no bc.
now_us() { local t=${EPOCHREALTIME/[.,]/}; echo "$((10#$t))"; }
since() { local d=$((($(now_us) - $1) / 100000)); echo "$((d / 10)).$((d % 10))s"; }

# Only root can apt-get; a non-root user must have the packages already.
APT_UPDATED=
apt_install() {
	local why=$1
	shift
	is_root || die "$why needs the Debian package(s) $* (not installed; run as root or: sudo apt-get install -y $*)"
	say "$why: installing $* with apt-get"
	mkdir -p "$LOGS"
	# A fresh machine has empty or stale package lists.
	if [[ -z $APT_UPDATED ]]; then
		apt-get update -qq >>"$LOGS/apt.log" 2>&1 || die "apt-get update failed" "$LOGS/apt.log"
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$LOGS/apt.log" 2>&1 ||
		die "apt-get install $* failed" "$LOGS/apt.log"
}

# Start a long-running foreground program as a detached daemon. setsid puts it
# in its own session so a Ctrl-C on `up` or the death of the calling test
# runner does not take it down; the subshell is no group leader, so setsid
# does not fork and $! is the daemon's own pid.
launch() {
	local name=$1 cwd=$2 log=$3
	shift 3
	(cd "$cwd" && exec setsid nohup "$@" >>"$log" 2>&1 </dev/null) &
	echo $! >"$RUN/$name.pid"
}

# A pid counts only while it is a live process of ours: pid files go stale
# and pids get reused. Zombies count as dead (PID 1 here reaps them late).
alive() {
	local pid=$1 comm=$2 stat rest c
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	read -r c 2>/dev/null <"/proc/$pid/comm" || return 1
	[[ $c == "$comm" ]] || return 1
	read -r rest 2>/dev/null <"/proc/$pid/stat" || return 1
	stat=${rest##*) }
	[[ ${stat:0:1} != Z ]]
}

# Every live process named $1 whose working dir is under $2. Each daemon runs
# inside its own state subdir, so this finds what a lost pid file would hide
# (postgres backends, a kafka started by an earlier, crashed `up`).
pids_in_dir() {
	local comm=$1 dir=$2 p c cwd
	for p in /proc/[0-9]*; do
		read -r c 2>/dev/null <"$p/comm" || continue
		[[ $c == "$comm" ]] || continue
		cwd=$(readlink "$p/cwd" 2>/dev/null) || continue
		[[ $cwd == "$dir" || $cwd == "$dir"/* ]] || continue
		alive "${p#/proc/}" "$comm" && echo "${p#/proc/}"
	done
	return 0
}

pidfile_pid() { if [[ -f $1 ]]; then head -n 1 "$1" 2>/dev/null || true; fi; }

# Signal, wait, then SIGKILL whatever is left; harmless when nothing runs.
stop_procs() {
	local name=$1 comm=$2 dir=$3 pidfile=$4 sig=$5 pid pids all deadline
	pid=$(pidfile_pid "$pidfile")
	pids=$( (alive "$pid" "$comm" && echo "$pid"; pids_in_dir "$comm" "$dir") | sort -u)
	if [[ -z $pids ]]; then
		say "$name: not running"
		rm -f "$pidfile"
		return 0
	fi
	all=$pids
	say "$name: stopping (pid ${pids//$'\n'/,})"
	# shellcheck disable=SC2086
	kill -"$sig" $pids 2>/dev/null || true
	deadline=$((SECONDS + STOP_TIMEOUT))
	while ((SECONDS < deadline)); do
		pids=$(for pid in $pids; do alive "$pid" "$comm" && echo "$pid"; done; pids_in_dir "$comm" "$dir")
		[[ -z $pids ]] && break
		sleep 0.2
	done
	if [[ -n $pids ]]; then
		say "$name: still running after ${STOP_TIMEOUT}s, sending SIGKILL"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.5
	fi
	# shellcheck disable=SC2206 # pids: digits only
	STOPPED_PIDS+=($all)
	rm -f "$pidfile"
}

# Daemons are orphans; this machine's PID 1 reaps them only a second or so
# after they exit, and a `ps` right after `down` would show them <defunct>.
# One wait for all of them, at the end of `down`.
STOPPED_PIDS=()
await_reaped() {
	local pid deadline=$((SECONDS + 3))
	for pid in "${STOPPED_PIDS[@]}"; do
		while [[ -e /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
	done
}

# Daemonizing servers (pg_ctl, redis --daemonize) return before the server
# has written its pid file; without the pid a crash at startup would only
# show up as a timeout.
await_pidfile() {
	local file=$1 name=$2 log=$3 i pid
	for ((i = 0; i < 50; i++)); do
		pid=$(pidfile_pid "$file")
		[[ -n $pid ]] && echo "$pid" && return 0
		sleep 0.1
	done
	die "$name did not start" "$log"
}

wait_until() {
	local name=$1 timeout=$2 check=$3 log=$4 pid=${5:-} comm=${6:-} start deadline
	start=$(now_us)
	deadline=$((SECONDS + timeout))
	until "$check"; do
		if [[ -n $pid ]] && ! alive "$pid" "$comm"; then
			die "$name exited during startup" "$log"
		fi
		((SECONDS < deadline)) || die "$name did not answer within ${timeout}s" "$log"
		sleep 0.3
	done
	say "$name: ready ($(since "$start"))"
}

# ---------------------------------------------------------------- kafka

KAFKA_DIR=$STATE/kafka
KAFKA_LOG=$LOGS/kafka.log

# A real Metadata request (v4, all topics) written by hand over /dev/tcp, so
# that `status` and the idempotence check of `up` need no extra JVM (~1 s
# each, more on a busy machine). A reply listing at least one live broker
# means this node has registered with its controller and serves clients.
kafka_answers() {
	local -a b
	# size=15 | api_key=3 api_version=4 correlation_id=1 client_id="" | topics=null allow_auto_create=false
	# shellcheck disable=SC2016 # expanded by the inner bash, from its $1
	read -r -a b < <(timeout 3 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf "\x00\x00\x00\x0f\x00\x03\x00\x04\x00\x00\x00\x01\x00\x00\xff\xff\xff\xff\x00" >&3
		head -c 16 <&3 | od -An -v -tu1 | tr -s " \n" "  "
	' _ "$KAFKA_PORT" 2>/dev/null) || true
	# bytes 4-7 correlation id, 8-11 throttle time, 12-15 broker count
	((${#b[@]} == 16 && b[7] == 1 && b[12] == 0 && (b[13] | b[14] | b[15]) > 0))
}

kafka_cached() { [[ -f $KAFKA_HOME/.complete ]]; }

kafka_fetch() {
	say "kafka: fetching Apache Kafka $KAFKA_VERSION jars with maven (once, into $KAFKA_HOME)"
	rm -rf "$KAFKA_HOME"
	mkdir -p "$KAFKA_HOME"
	mvn -B -q -f "$KAFKA_POM" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$KAFKA_HOME/libs" >"$LOGS/kafka-maven.log" 2>&1 ||
		die "maven could not resolve Kafka $KAFKA_VERSION (see scripts/kafka/pom.xml)" "$LOGS/kafka-maven.log"
	# Written last: a half-finished copy is never taken for a cache hit.
	touch "$KAFKA_HOME/.complete"
}

# The same JVM flags kafka-server-start.sh would use, minus its GC log.
kafka_jvm() {
	KAFKA_JVM=("$JAVA" -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
		-Dlog4j.configuration="file:$KAFKA_DIR/log4j.properties" -cp "$KAFKA_HOME/libs/*")
}

# Rewritten on every start so that changed ports take effect; the data dir
# does not depend on them.
kafka_write_config() {
	mkdir -p "$KAFKA_DIR/data"
	cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by scripts/stack.sh on every start: edit the script, not this file.
process.roles=broker,controller
node.id=1
# A static one-voter quorum: works unchanged on 3.9 and 4.x and needs no
# --standalone/--initial-controllers at format time.
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data
# One node: every internal topic must live with a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
min.insync.replicas=1
default.replication.factor=1
# Faust workers join groups constantly in tests; don't wait 3 s each time.
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
num.partitions=1
# The cleaner's default 128 MiB dedupe buffer would eat a quarter of the heap.
log.cleaner.dedupe.buffer.size=16777216
# After a kill -9 the restarted controller refuses the broker's new
# registration until the old session times out (default 9 s, ~14 s to ready
# with retry backoff); chaos tests restart Kafka a lot. Still well above GC
# pauses of a 512 MiB heap.
broker.session.timeout.ms=4500
broker.heartbeat.interval.ms=1000
EOF
	cat >"$KAFKA_DIR/log4j.properties" <<EOF
# Everything into one file: stack.sh prints its tail when the broker fails.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$KAFKA_LOG
log4j.appender.file.Append=true
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
# These are chatty at INFO and say nothing a developer needs.
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
}

kafka_prepare() {
	command -v "$JAVA" >/dev/null || apt_install kafka openjdk-17-jre-headless
	kafka_cached || command -v mvn >/dev/null || apt_install kafka maven
}

kafka_start() {
	local KAFKA_JVM
	kafka_jvm
	kafka_write_config
	if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
		say "kafka: formatting KRaft storage"
		"${KAFKA_JVM[@]}" kafka.tools.StorageTool format -t "$(kafka_cluster_id)" \
			-c "$KAFKA_DIR/server.properties" >>"$KAFKA_LOG" 2>&1 ||
			die "kafka storage format failed" "$KAFKA_LOG"
	fi
	say "kafka: starting $KAFKA_VERSION on 127.0.0.1:$KAFKA_PORT"
	launch kafka "$KAFKA_DIR" "$KAFKA_LOG" "${KAFKA_JVM[@]}" kafka.Kafka "$KAFKA_DIR/server.properties"
}

# What `kafka-storage.sh random-uuid` prints (16 random bytes, base64url, no
# padding, not starting with '-'), without paying for another JVM.
kafka_cluster_id() {
	local id
	while :; do
		id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
		[[ $id != -* ]] && break
	done
	echo "$id"
}

kafka_wait() {
	wait_until kafka "$KAFKA_READY_TIMEOUT" kafka_answers "$KAFKA_LOG" "$(pidfile_pid "$RUN/kafka.pid")" java
}

kafka_stop() { stop_procs kafka java "$KAFKA_DIR" "$RUN/kafka.pid" TERM; }

# ---------------------------------------------------------------- postgres

PG_DIR=$STATE/postgres
PG_DATA=$PG_DIR/data
PG_LOG=$LOGS/postgres.log
PG_BIN=

# Prefer 15 (what docker-compose runs), and always the major version an
# existing data dir was made with: a newer server refuses an older cluster.
pg_find_bin() {
	local want='' d
	[[ -r $PG_DATA/PG_VERSION ]] && want=$(<"$PG_DATA/PG_VERSION")
	for d in "/usr/lib/postgresql/${want:-15}/bin" $([[ -n $want ]] || ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -rV); do
		[[ -x $d/postgres && -x $d/initdb && -x $d/pg_ctl ]] && PG_BIN=$d && return 0
	done
	return 1
}

# As root, the server runs as the `postgres` OS user (it refuses to run as
# root); anyone else runs it as themselves. From / because initdb and pg_ctl
# fail when the postgres user cannot read the caller's cwd (e.g. /root).
pg_as() {
	if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

pg_answers() {
	local isready=pg_isready
	[[ -n $PG_BIN ]] || pg_find_bin || true
	[[ -n $PG_BIN ]] && isready=$PG_BIN/pg_isready
	command -v "$isready" >/dev/null || return 1
	timeout 5 "$isready" -q -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres 2>/dev/null
}

pg_prepare() {
	pg_find_bin || { apt_install postgres postgresql && pg_find_bin; } ||
		die "no PostgreSQL server under /usr/lib/postgresql/*/bin (want major $(cat "$PG_DATA/PG_VERSION" 2>/dev/null || echo 15))"
	if is_root && ! id -u postgres >/dev/null 2>&1; then
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
	fi
}

# After a kill -9 of the postmaster (chaos tests) its backends linger until
# they notice, and the dead postmaster stays a zombie until this machine's
# PID 1 reaps it, which postgres takes for a live server ("lock file ...
# already exists", for postmaster.pid and for the socket's .lock alike).
# No live postmaster of ours means those lock files are stale: let the
# orphans go, then drop them.
pg_clear_stale_locks() {
	local pid orphans i
	pid=$(pidfile_pid "$PG_DATA/postmaster.pid")
	[[ -n $pid ]] && alive "$pid" postgres && return 0
	orphans=$(pids_in_dir postgres "$PG_DATA")
	if [[ -n $orphans ]]; then
		# shellcheck disable=SC2086
		kill -QUIT $orphans 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			[[ -z $(pids_in_dir postgres "$PG_DATA") ]] && break
			sleep 0.1
		done
	fi
	rm -f "$PG_DATA/postmaster.pid" "$PG_DIR"/socket/.s.PGSQL.*
}

pg_start() {
	local sock=$PG_DIR/socket socket_opt
	mkdir -p "$PG_DIR" "$sock"
	touch "$PG_LOG"
	# Our own cluster, owned by whoever runs the server; no system cluster is touched.
	is_root && chown postgres: "$PG_DIR" "$sock" "$PG_LOG" && chmod 700 "$PG_DIR"
	if [[ ! -f $PG_DATA/PG_VERSION ]]; then
		say "postgres: initdb $(basename "$(dirname "$PG_BIN")") in $PG_DATA"
		rm -rf "$PG_DATA"
		# --no-sync: a throwaway dev cluster does not need initdb's fsyncs (seconds on slow disks).
		pg_as "$PG_BIN/initdb" -D "$PG_DATA" --auth=trust -U postgres -E UTF8 --locale=C.UTF-8 --no-sync \
			>>"$PG_LOG" 2>&1 || die "initdb failed" "$PG_LOG"
	fi
	pg_clear_stale_locks
	# A unix socket path over 107 bytes makes the server refuse to start;
	# every client here uses TCP anyway.
	socket_opt="-k '$sock'"
	((${#sock} + 16 > 107)) && socket_opt="-c unix_socket_directories=''"
	say "postgres: starting on 127.0.0.1:$POSTGRES_PORT"
	# -W: don't block here, pg_wait polls while the other services start.
	pg_as "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -W \
		-o "-c listen_addresses=127.0.0.1 -p $POSTGRES_PORT $socket_opt" start >>"$PG_LOG" 2>&1 ||
		die "pg_ctl start failed" "$PG_LOG"
}

pg_wait() {
	local pid
	pid=$(await_pidfile "$PG_DATA/postmaster.pid" postgres "$PG_LOG")
	wait_until postgres "$OTHER_READY_TIMEOUT" pg_answers "$PG_LOG" "$pid" postgres
}

# Also run when the server was already up: a purged or foreign cluster may lack it.
pg_ensure_db() {
	local psql=psql
	[[ -n $PG_BIN ]] && psql=$PG_BIN/psql
	local has
	has=$(PGCONNECT_TIMEOUT=5 "$psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -qtAX \
		-c "select 1 from pg_database where datname = 'fundedflow'" 2>>"$PG_LOG") ||
		die "cannot query the server on 127.0.0.1:$POSTGRES_PORT as user postgres without a password (if it is not ours, e.g. a system cluster that apt-get started: pg_lsclusters; use another POSTGRES_PORT)" "$PG_LOG"
	if [[ $has != 1 ]]; then
		say "postgres: creating database fundedflow"
		PGCONNECT_TIMEOUT=5 "$psql" -h 127.0.0.1 -p "$POSTGRES_PORT" -U postgres -d postgres -qtAX \
			-c 'create database fundedflow' >>"$PG_LOG" 2>&1 || die "create database fundedflow failed" "$PG_LOG"
	fi
}

# SIGINT is postgres' "fast" shutdown (what pg_ctl -m fast sends); signalling
# directly needs neither the binaries nor the postgres user.
pg_stop() { stop_procs postgres postgres "$PG_DATA" "$PG_DATA/postmaster.pid" INT; }

# ---------------------------------------------------------------- redis

REDIS_DIR=$STATE/redis
REDIS_LOG=$LOGS/redis.log

redis_answers() {
	[[ $(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
}

redis_prepare() { command -v redis-server >/dev/null || apt_install redis redis-server; }

redis_start() {
	mkdir -p "$REDIS_DIR"
	rm -f "$RUN/redis.pid" # a stale one (kill -9) would be read before redis rewrites it
	say "redis: starting on 127.0.0.1:$REDIS_PORT"
	# A cache for the app: no RDB/AOF, so a restart in the chaos tests starts empty
	# exactly like the redis:7 container without a volume.
	(cd "$REDIS_DIR" && redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
		--pidfile "$RUN/redis.pid" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
		--save '' --appendonly no >>"$REDIS_LOG" 2>&1) || die "redis-server failed to start" "$REDIS_LOG"
}

redis_wait() {
	local pid
	pid=$(await_pidfile "$RUN/redis.pid" redis "$REDIS_LOG")
	wait_until redis "$OTHER_READY_TIMEOUT" redis_answers "$REDIS_LOG" "$pid" redis-server
}

redis_stop() { stop_procs redis redis-server "$REDIS_DIR" "$RUN/redis.pid" TERM; }

# ---------------------------------------------------------------- stripe-mock

STRIPE_DIR=$STATE/stripe-mock
STRIPE_LOG=$LOGS/stripe-mock.log

stripe_answers() {
	curl -sf -m 3 -o /dev/null -H 'Authorization: Bearer sk_test_123' \
		"http://127.0.0.1:$STRIPE_MOCK_PORT/v1/balance" 2>/dev/null
}

stripe_cached() { [[ -x $STRIPE_MOCK_BIN ]]; }

stripe_build() {
	command -v go >/dev/null || die "stripe-mock needs Go (expected at /usr/local/go/bin/go)"
	say "stripe-mock: building $STRIPE_MOCK_VERSION with go install (once, into $(dirname "$STRIPE_MOCK_BIN"))"
	mkdir -p "$(dirname "$STRIPE_MOCK_BIN")"
	# Outside the repo, so no go.mod or GOFLAGS of a project can interfere.
	(cd "$CACHE" && GOFLAGS='' GOBIN=$(dirname "$STRIPE_MOCK_BIN") \
		go install "github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION") >"$LOGS/stripe-mock-build.log" 2>&1 ||
		die "go install stripe-mock@$STRIPE_MOCK_VERSION failed" "$LOGS/stripe-mock-build.log"
}

stripe_start() {
	mkdir -p "$STRIPE_DIR"
	say "stripe-mock: starting $STRIPE_MOCK_VERSION on 127.0.0.1:$STRIPE_MOCK_PORT"
	launch stripe-mock "$STRIPE_DIR" "$STRIPE_LOG" "$STRIPE_MOCK_BIN" \
		-http-port "$STRIPE_MOCK_PORT" -https-port "$STRIPE_MOCK_HTTPS_PORT"
}

stripe_wait() {
	wait_until stripe-mock "$OTHER_READY_TIMEOUT" stripe_answers "$STRIPE_LOG" "$(pidfile_pid "$RUN/stripe-mock.pid")" stripe-mock
}

stripe_stop() { stop_procs stripe-mock stripe-mock "$STRIPE_DIR" "$RUN/stripe-mock.pid" TERM; }

# ---------------------------------------------------------------- commands

# The function prefix of each service.
fn() { case $1 in kafka) echo kafka ;; postgres) echo pg ;; redis) echo redis ;; stripe-mock) echo stripe ;; esac; }

endpoint() {
	case $1 in
	kafka) echo "127.0.0.1:$KAFKA_PORT" ;;
	postgres) echo "127.0.0.1:$POSTGRES_PORT" ;;
	redis) echo "127.0.0.1:$REDIS_PORT" ;;
	stripe-mock) echo "http://127.0.0.1:$STRIPE_MOCK_PORT" ;;
	esac
}

# Pid of the instance we manage, if any: tells "ours" from "someone else's".
our_pid() {
	local pid
	case $1 in
	kafka) pid=$(pidfile_pid "$RUN/kafka.pid") && alive "$pid" java && echo "$pid" ;;
	postgres) pid=$(pidfile_pid "$PG_DATA/postmaster.pid") && alive "$pid" postgres && echo "$pid" ;;
	redis) pid=$(pidfile_pid "$RUN/redis.pid") && alive "$pid" redis-server && echo "$pid" ;;
	stripe-mock) pid=$(pidfile_pid "$RUN/stripe-mock.pid") && alive "$pid" stripe-mock && echo "$pid" ;;
	esac
	return 0
}

owner() { if [[ -n $1 ]]; then echo "pid $1"; else echo "not started by stack.sh, left alone"; fi; }

SELECTED=()
select_services() {
	local s
	SELECTED=()
	for s in "$@"; do
		[[ $s == stripe ]] && s=stripe-mock
		[[ -n $(fn "$s") ]] || die "unknown service '$s' (known: ${ALL_SERVICES[*]})"
		SELECTED+=("$s")
	done
	((${#SELECTED[@]})) || SELECTED=("${ALL_SERVICES[@]}")
}

selected_in() {
	local want=$1
	shift
	[[ " $* " == *" $want "* ]]
}
selected() { selected_in "$1" "${SELECTED[@]}"; }

cmd_up() {
	local t0 s pid bg=() failed=0 todo=() start=()
	t0=$(now_us)
	select_services "$@"
	mkdir -p "$LOGS" "$RUN"
	# The state dir usually sits in the repo: keep git quiet about it even where
	# the repo's .gitignore does not list it.
	[[ -f $STATE/.gitignore ]] || echo '*' >"$STATE/.gitignore"

	for s in "${SELECTED[@]}"; do
		pid=$(our_pid "$s")
		if "$(fn "$s")_answers"; then
			say "$s: already up on $(endpoint "$s") ($(owner "$pid"))"
			continue
		fi
		todo+=("$s")
		# Ours and alive but silent: still booting (an interrupted `up`), so
		# wait for it rather than start a second copy on the same port.
		if [[ -n $pid ]]; then
			say "$s: already starting (pid $pid)"
		else
			start+=("$s")
		fi
	done

	# Installs first and one at a time (apt holds the dpkg lock) ...
	for s in "${start[@]}"; do
		case $s in
		kafka) kafka_prepare ;;
		postgres) pg_prepare ;;
		redis) redis_prepare ;;
		stripe-mock) stripe_cached || command -v go >/dev/null ||
			die "stripe-mock needs Go to build (expected at /usr/local/go/bin/go)" ;;
		esac
	done
	# ... then the two slow cold-cache steps side by side: maven mostly
	# waits on the network while go install keeps the CPUs busy.
	if selected_in kafka "${start[@]}" && ! kafka_cached; then
		kafka_fetch &
		bg+=($!)
	fi
	if selected_in stripe-mock "${start[@]}" && ! stripe_cached; then
		stripe_build &
		bg+=($!)
	fi
	for pid in "${bg[@]}"; do wait "$pid" || failed=1; done
	((failed == 0)) || exit 1

	# Start everything before waiting for anything: the Kafka JVM is the long
	# pole, the others come up while it boots.
	for s in "${start[@]}"; do "$(fn "$s")_start"; done
	for s in "${todo[@]}"; do "$(fn "$s")_wait"; done

	if selected postgres; then
		[[ -n $PG_BIN ]] || pg_find_bin || true
		pg_ensure_db
	fi
	say "stack: up in $(since "$t0"): ${SELECTED[*]}"
}

cmd_down() {
	local purge=0 i s
	if [[ ${1:-} == --purge ]]; then
		purge=1
		shift
	fi
	select_services "$@"
	# Reverse order: the app-facing mocks go first, Kafka (slowest) last.
	for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do
		s=${SELECTED[i]}
		"$(fn "$s")_stop"
	done
	await_reaped
	if ((purge)); then
		if (($# == 0)); then
			say "stack: deleting $STATE"
			rm -rf "$STATE"
		else
			for s in "${SELECTED[@]}"; do
				say "$s: deleting its state"
				case $s in
				kafka) rm -rf "$KAFKA_DIR" ;;
				postgres) rm -rf "$PG_DIR" ;;
				redis) rm -rf "$REDIS_DIR" ;;
				stripe-mock) rm -rf "$STRIPE_DIR" ;;
				esac
			done
		fi
	fi
}

cmd_status() {
	local s pid ok=0
	select_services "$@"
	for s in "${SELECTED[@]}"; do
		pid=$(our_pid "$s")
		if "$(fn "$s")_answers"; then
			printf '%-12s up    %-24s %s\n' "$s" "$(endpoint "$s")" "$(owner "$pid")"
		else
			printf '%-12s down  %-24s %s\n' "$s" "$(endpoint "$s")" "${pid:+pid $pid is running but does not answer}"
			ok=1
		fi
	done
	return "$ok"
}

cmd_env() {
	cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:$POSTGRES_PORT/fundedflow
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export STRIPE_API_BASE=http://127.0.0.1:$STRIPE_MOCK_PORT
EOF
}

# Kafka's own command-line tools, for people and tests that have no Kafka install.
kafka_tool() {
	local class=$1
	shift
	kafka_cached || die "Kafka $KAFKA_VERSION is not fetched yet: run 'scripts/stack.sh up kafka' first"
	local conf=$KAFKA_HOME/tools-log4j.properties
	# Like Kafka's tools-log4j.properties: warnings only, on stderr, so stdout stays parseable.
	[[ -f $conf ]] || printf '%s\n' 'log4j.rootLogger=WARN, stderr' \
		'log4j.appender.stderr=org.apache.log4j.ConsoleAppender' \
		'log4j.appender.stderr.Target=System.err' \
		'log4j.appender.stderr.layout=org.apache.log4j.PatternLayout' \
		'log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n' >"$conf"
	"$JAVA" -Xmx256m -Dlog4j.configuration="file:$conf" \
		-cp "$KAFKA_HOME/libs/*" "$class" --bootstrap-server "127.0.0.1:$KAFKA_PORT" "$@"
}

cmd_kafka_topics() { kafka_tool org.apache.kafka.tools.TopicCommand "$@"; }
cmd_kafka_console_producer() { kafka_tool kafka.tools.ConsoleProducer "$@"; }
cmd_kafka_console_consumer() { kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer "$@"; }

usage() {
	sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
	exit 2
}

case ${1:-} in
up | down | status | env | kafka-topics | kafka-console-producer | kafka-console-consumer) ;;
*) usage ;;
esac
cmd=${1//-/_}
shift
"cmd_$cmd" "$@"
