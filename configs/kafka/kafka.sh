#!/usr/bin/env bash
# Local single-node Apache Kafka 4.x (KRaft, broker + controller in one JVM) from
# Maven Central jars: no Docker needed, only Java 17+ and Maven.
#
#   configs/kafka/kafka.sh up       fetch jars once, format storage once, start, wait until ready
#   configs/kafka/kafka.sh down     stop the broker started by `up` (by its pid)
#   configs/kafka/kafka.sh status   exit 0 and print the address when it runs, exit 1 otherwise
#
# Environment:
#   KAFKA_PORT             client listener port       (default 19092; never the usual 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port      (default 19093)
#   KAFKA_SASL_PORT        optional second listener, SASL_PLAINTEXT with PLAIN, for tests
#   KAFKA_SASL_USERS       its users, "name:password ..." (with KAFKA_SASL_PORT)
#   KAFKA_ADVERTISED_PORT  port the broker tells clients to use (default KAFKA_PORT;
#                          another one puts a TCP proxy, e.g. for fault tests, in between)
#   KAFKA_DIR              state: libs/, data/, logs/, kafka.pid (default <repo>/.cache/kafka)
#   KAFKA_WAIT_SECONDS     readiness bound for `up`   (default 90)
#   KAFKA_HEAP             JVM max heap               (default 512m)
#
# `up` prints the bootstrap address (127.0.0.1:PORT) as its last line of stdout, so
# `brokers=$(configs/kafka/kafka.sh up | tail -n1)` works; progress goes to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)

port=${KAFKA_PORT:-19092}
ctrl_port=${KAFKA_CONTROLLER_PORT:-19093}
state=${KAFKA_DIR:-$root/.cache/kafka}
wait_seconds=${KAFKA_WAIT_SECONDS:-90}
heap=${KAFKA_HEAP:-512m}

libs=$state/libs
data=$state/data
logs=$state/logs
pidfile=$state/kafka.pid
addrfile=$state/kafka.addr
conf=$state/server.properties
addr=127.0.0.1:$port

log() { printf 'kafka: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

java_bin() {
	if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then
		echo "$JAVA_HOME/bin/java"
	elif command -v java >/dev/null 2>&1; then
		command -v java
	else
		die "java not found (install a JDK 17+ or set JAVA_HOME)"
	fi
}

# running prints the broker's pid and succeeds when the pid file names a live broker.
running() {
	[[ -f $pidfile ]] || return 1
	local pid
	pid=$(<"$pidfile")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	kill -0 "$pid" 2>/dev/null || return 1
	# Guard against a recycled pid: it must be our JVM.
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
	echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# fetch_jars copies the broker's classpath into $libs once; later runs reuse it
# (and Maven reuses ~/.m2 for a fresh checkout).
fetch_jars() {
	if [[ -f $libs/.complete ]]; then
		return 0
	fi
	command -v mvn >/dev/null 2>&1 || die "mvn not found (apt-get install -y maven)"
	log "fetching Kafka jars into $libs"
	local tmp=$state/libs.tmp
	rm -rf "$tmp"
	mkdir -p "$state"
	if ! mvn -B -q -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
		-DoutputDirectory="$tmp" -DincludeScope=runtime >"$state/mvn.log" 2>&1; then
		cat "$state/mvn.log" >&2
		die "jar fetch failed (Maven log above)"
	fi
	ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "jar fetch produced no kafka_2.13 jar"
	touch "$tmp/.complete"
	rm -rf "$libs"
	mv "$tmp" "$libs"
}

# write_config renders the effective server.properties: the template with this run's
# ports and directories appended (for duplicate keys the last one wins).
write_config() {
	mkdir -p "$state" "$logs"
	{
		cat "$here/server.properties"
		printf '\n# kafka.sh overrides for this run\n'
		if [[ -n ${KAFKA_SASL_PORT:-} ]]; then
			# a second listener with SASL/PLAIN (users from KAFKA_SASL_USERS) for tests of
			# the clients' SASL settings; the broker's own traffic stays on PLAINTEXT
			printf 'listeners=PLAINTEXT://127.0.0.1:%s,CONTROLLER://127.0.0.1:%s,SASL_PLAINTEXT://127.0.0.1:%s\n' "$port" "$ctrl_port" "$KAFKA_SASL_PORT"
			printf 'advertised.listeners=PLAINTEXT://127.0.0.1:%s,SASL_PLAINTEXT://127.0.0.1:%s\n' "${KAFKA_ADVERTISED_PORT:-$port}" "$KAFKA_SASL_PORT"
			printf 'listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT\n'
			printf 'sasl.enabled.mechanisms=PLAIN\n'
			local users="" u
			for u in ${KAFKA_SASL_USERS:-}; do # user:password ...
				users+=" user_${u%%:*}=\"${u#*:}\""
			done
			printf 'listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required%s;\n' "$users"
		else
			printf 'listeners=PLAINTEXT://127.0.0.1:%s,CONTROLLER://127.0.0.1:%s\n' "$port" "$ctrl_port"
			printf 'advertised.listeners=PLAINTEXT://127.0.0.1:%s\n' "${KAFKA_ADVERTISED_PORT:-$port}"
		fi
		printf 'controller.quorum.bootstrap.servers=127.0.0.1:%s\n' "$ctrl_port"
		printf 'log.dirs=%s\n' "$data"
	} >"$conf"
}

# format_storage formats $data once. The KRaft quorum records the controller's
# endpoint, so a data dir formatted for other ports is wiped and formatted anew.
format_storage() {
	local stamp="$port/$ctrl_port"
	if [[ -f $data/meta.properties && -f $state/data.ports && $(<"$state/data.ports") == "$stamp" ]]; then
		return 0
	fi
	rm -rf "$data"
	mkdir -p "$data"
	local java id
	java=$(java_bin)
	id=$("$java" -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
	[[ -n $id ]] || die "could not generate a cluster id"
	log "formatting $data (cluster id $id)"
	if ! "$java" -Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$logs" \
		-cp "$libs/*" kafka.tools.StorageTool format --standalone -t "$id" -c "$conf" \
		>"$logs/format.log" 2>&1; then
		cat "$logs/format.log" >&2
		die "storage format failed"
	fi
	echo "$stamp" >"$state/data.ports"
}

# ready succeeds when the broker answers a metadata request (list topics).
ready() {
	port_open "$port" || return 1
	timeout 30 "$(java_bin)" -Xmx128m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
		-Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$logs" \
		-cp "$libs/*" org.apache.kafka.tools.TopicCommand \
		--bootstrap-server "$addr" --list >/dev/null 2>&1
}

up() {
	if running >/dev/null; then
		local have
		have=$(cat "$addrfile" 2>/dev/null || echo "$addr")
		[[ $have == "$addr" ]] || log "warning: asked for $addr but the running broker listens on $have"
		log "already running (pid $(running)) at $have"
		echo "$have"
		return 0
	fi
	port_open "$port" && die "port $port is taken by another process (set KAFKA_PORT)"
	port_open "$ctrl_port" && die "port $ctrl_port is taken by another process (set KAFKA_CONTROLLER_PORT)"

	local java
	java=$(java_bin)
	fetch_jars
	write_config
	format_storage

	log "starting broker on $addr (controller 127.0.0.1:$ctrl_port)"
	# setsid: the broker outlives this script and is not hit by the terminal's Ctrl-C
	# aimed at the task runner. The inner shell writes its own pid, then becomes the JVM,
	# so the pid file names the broker whether or not setsid had to fork.
	rm -f "$pidfile"
	setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
		"$java" -Xmx"$heap" -Xms"$heap" -XX:+UseG1GC -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$here/log4j2.properties" -Dkafka.logs.dir="$logs" \
		-cp "$libs/*" kafka.Kafka "$conf" \
		>>"$logs/console.log" 2>&1 </dev/null &
	local pid="" i
	for ((i = 0; i < 100; i++)); do
		[[ -s $pidfile ]] && pid=$(<"$pidfile") && [[ -n $pid ]] && break
		sleep 0.1
	done
	[[ -n $pid ]] || die "broker did not start"
	echo "$addr" >"$addrfile"

	local deadline=$((SECONDS + wait_seconds))
	until ready; do
		if ! kill -0 "$pid" 2>/dev/null; then
			rm -f "$pidfile"
			tail -n 30 "$logs/console.log" "$logs/server.log" >&2 2>/dev/null || true
			die "broker exited during startup (logs in $logs)"
		fi
		if ((SECONDS >= deadline)); then
			tail -n 30 "$logs/server.log" >&2 2>/dev/null || true
			kill "$pid" 2>/dev/null || true
			rm -f "$pidfile"
			die "broker not ready after ${wait_seconds}s (logs in $logs)"
		fi
		sleep 1
	done
	log "ready (pid $pid)"
	echo "$addr"
}

down() {
	local pid
	if ! pid=$(running); then
		rm -f "$pidfile"
		log "not running"
		return 0
	fi
	log "stopping broker (pid $pid)"
	kill -TERM "$pid"
	local deadline=$((SECONDS + 30))
	while kill -0 "$pid" 2>/dev/null; do
		if ((SECONDS >= deadline)); then
			log "no clean shutdown after 30s, killing"
			kill -KILL "$pid" 2>/dev/null || true
			break
		fi
		sleep 0.5
	done
	rm -f "$pidfile" "$addrfile"
}

status() {
	local pid
	if pid=$(running); then
		local have
		have=$(cat "$addrfile" 2>/dev/null || echo "$addr")
		log "running (pid $pid) at $have"
		echo "$have"
		return 0
	fi
	log "not running"
	return 1
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*)
	echo "usage: $0 up|down|status" >&2
	exit 2
	;;
esac
