#!/usr/bin/env bash
# results/run.sh: regenerates every benchmark figure in results/.
#
# Builds the release binaries, installs Redis and NATS from Debian's packages
# when missing, runs every loadgen scenario against mq-actix, Redis and NATS
# (each server started afresh for each run, on a free 127.0.0.1 port, and
# its peak resident memory read from /proc), runs the criterion benchmarks,
# records the machine and its load (before the build, at the start of each
# case and at the end, in results/data/load.jsonl), and finally redraws
# the charts and rewrites the tables of results/README.md with
# results-render. Every figure in the README comes from the files this
# script writes into results/data/.
#
#   results/run.sh               the full run: about 35 minutes on 2 cores
#   QUICK=1 results/run.sh       a smoke run of a few minutes; NOT results
#
# Knobs (environment variables; QUICK=1 changes the defaults in brackets):
#   QUICK=1                 smoke run: short runs, few clients, no cargo bench
#   RUNS=3 [1]              runs per scenario and server; tables show medians
#   DURATION=10 [2]         seconds each fanout, latency and queue run publishes
#   HOLD=5 [1]              seconds conns holds its idle connections
#   SERVERS="mq-actix redis nats"        servers to measure
#   SCENARIOS="fanout tls latency pairs queue replay conns sizes durable"
#                           scenarios to run
#   FANOUT_SUBSCRIBERS="1 100 1000" ["1 10 100"]
#   TLS_SUBSCRIBERS=100     fanout size of the TLS case (mq-actix only), the
#                           same load as the plain fanout of that size
#   SIZES="1024 16384"      message sizes (bytes) of the sizes scenario:
#                           fanout-100 and queue again with bigger messages
#   LATENCY_SUBSCRIBERS=100            fanout size of the open-loop runs
#   LATENCY_PERCENTS="10 25 50 75 100" ["25 50 100"]  offered rates, as % of
#                           the closed-loop maximum of fanout-LATENCY_SUBSCRIBERS
#   PAIRS_CLIENTS=1000 [100]  PAIRS_MESSAGES=100 (per client)
#   QUEUE_WORKERS=10  QUEUE_PUBLISHERS=2
#   REPLAY_SUBSCRIBERS=100 [10]  CACHE_SIZE=100 (mq-actix's CACHE_SIZE)
#   CONNS=10000 [1000]      idle subscribed connections of the conns scenario
#   BENCH=1 [0]             run `cargo bench`; 0 only collects what is already
#                           in $CRITERION_HOME or $CARGO_TARGET_DIR/criterion
#   BENCH_ARGS=""           extra criterion arguments, e.g. "--measurement-time 3"
#   INSTALL=1               apt-get install redis-server / nats-server when
#                           missing; 0 skips servers that are not installed
#   KEEP=0                  1 keeps the run files of earlier runs in results/data
#                           (to redo a few SCENARIOS only)
#   CARGO_TARGET_DIR        where cargo builds (default: target)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
    : "${RUNS:=1}" "${DURATION:=2}" "${HOLD:=1}" "${BENCH:=0}" "${CONNS:=1000}"
    : "${FANOUT_SUBSCRIBERS:=1 10 100}" "${LATENCY_PERCENTS:=25 50 100}"
    : "${PAIRS_CLIENTS:=100}" "${REPLAY_SUBSCRIBERS:=10}"
fi
RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
HOLD=${HOLD:-5}
SERVERS=${SERVERS:-mq-actix redis nats}
SCENARIOS=${SCENARIOS:-fanout tls latency pairs queue replay conns sizes durable}
FANOUT_SUBSCRIBERS=${FANOUT_SUBSCRIBERS:-1 100 1000}
TLS_SUBSCRIBERS=${TLS_SUBSCRIBERS:-100}
SIZES=${SIZES:-1024 16384}
LATENCY_SUBSCRIBERS=${LATENCY_SUBSCRIBERS:-100}
LATENCY_PERCENTS=${LATENCY_PERCENTS:-10 25 50 75 100}
PAIRS_CLIENTS=${PAIRS_CLIENTS:-1000}
PAIRS_MESSAGES=${PAIRS_MESSAGES:-100}
QUEUE_WORKERS=${QUEUE_WORKERS:-10}
QUEUE_PUBLISHERS=${QUEUE_PUBLISHERS:-2}
REPLAY_SUBSCRIBERS=${REPLAY_SUBSCRIBERS:-100}
CACHE_SIZE=${CACHE_SIZE:-100}
CONNS=${CONNS:-10000}
BENCH=${BENCH:-1}
BENCH_ARGS=${BENCH_ARGS:-}
INSTALL=${INSTALL:-1}
KEEP=${KEEP:-0}

TARGET_DIR=${CARGO_TARGET_DIR:-target}
[[ $TARGET_DIR == /* ]] || TARGET_DIR=$ROOT/$TARGET_DIR
BIN=$TARGET_DIR/release
MQ=$BIN/mq-actix
LOADGEN=$BIN/loadgen
RENDER=$BIN/results-render
# Where criterion writes, by its own rules.
CRITERION_DIR=${CRITERION_HOME:-$TARGET_DIR/criterion}
DATA=$ROOT/results/data
# The load samples, one JSON object a line.
LOAD=$DATA/load.jsonl
LOGS=$(mktemp -d "${TMPDIR:-/tmp}/mq-results.XXXXXX")
# The TLS case's certificate and key, made for the run and removed after.
TLS_DIR=
# The data directory of a durable server (mq-actix --data-dir, Redis's AOF),
# fresh for each run and removed after it, so that no run starts with what
# an earlier one stored.
RUN_DIR=
FAILED=()

say() { printf '\n== %s\n' "$*"; }
has() { [[ " $1 " == *" $2 "* ]]; }

json_string() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    printf '"%s"' "$s"
}
json_list() {
    local item out=
    for item in $1; do out+="${out:+, }$(json_string "$item")"; done
    printf '[%s]' "$out"
}

# One line of JSON on what the machine is doing, labelled WHEN ($1): the
# load averages of /proc/loadavg, and how many tasks other than this
# script were runnable, averaged over ten looks 0.1 s apart. It is taken
# when no server or loadgen of ours runs, so the runnable count is everyone
# else's, while the load averages still carry our own earlier runs: the
# renderer judges the load averages of the sample before the build only,
# and the runnable count of every sample (results/render/src/machine.rs).
sample_load() {
    local one five fifteen tasks rest i others=0
    for ((i = 0; i < 10; i++)); do
        read -r one five fifteen tasks rest </proc/loadavg
        # The runnable count includes this shell, which is reading.
        others=$((others + ${tasks%/*} - 1))
        sleep 0.1
    done
    printf '{"when": %s, "at": "%s", "load_1m": %s, "load_5m": %s, "load_15m": %s, "others_runnable": %s}\n' \
        "$(json_string "$1")" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$one" "$five" "$fifteen" \
        "$(awk -v sum="$others" 'BEGIN { printf "%.1f", sum / 10 }')"
}

# PATH as commands.txt shows it: relative to the repo, and a binary built
# outside it (CARGO_TARGET_DIR elsewhere) as cargo's default target/release/
# would hold it, so that no path of the machine that ran is recorded.
shown_path() {
    if [[ $1 == "$ROOT"/* ]]; then
        echo "${1#"$ROOT"/}"
    else
        echo "target/release/${1##*/}"
    fi
}

# --- the server under test: one child process at a time -------------------

SERVER_PID=
PORT=

stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        # A server that ignores SIGTERM is killed after 5 s.
        (sleep 5 && kill -KILL "$SERVER_PID" 2>/dev/null) &
        local watchdog=$!
        wait "$SERVER_PID" 2>/dev/null || true
        kill "$watchdog" 2>/dev/null || true
        wait "$watchdog" 2>/dev/null || true
        SERVER_PID=
    fi
    # What a durable server stored is of no use to the next run.
    if [[ -n $RUN_DIR ]]; then
        rm -rf "$RUN_DIR"
        RUN_DIR=
    fi
}

cleanup() {
    local status=$?
    stop_server
    [[ -z $TLS_DIR ]] || rm -rf "$TLS_DIR"
    echo "logs: $LOGS"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port nothing listens on, below the ephemeral range that loadgen's own
# connections use.
free_port() {
    local port tries
    for ((tries = 0; tries < 200; tries++)); do
        port=$((20000 + RANDOM % 10000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    echo "no free port found" >&2
    return 1
}

# The command line that starts SERVER ($1) on PORT ($2), in the foreground;
# $3, when given, is the path of mq-actix's binary to write instead of $MQ,
# $4 the directory of the TLS certificate instead of $TLS_DIR, and $5 the
# data directory instead of $RUN_DIR.
server_command() {
    case $1 in
    mq-actix) echo "${3:-$MQ} $2 $CACHE_SIZE" ;;
    # Its TLS listener alone on the port, so that a client that forgets TLS
    # fails rather than measures plain text.
    mq-actix-tls) echo "${3:-$MQ} $2 $CACHE_SIZE --tls-port $2 --tls-cert ${4:-$TLS_DIR}/cert.pem" \
        "--tls-key ${4:-$TLS_DIR}/key.pem --no-plain" ;;
    # On disk, syncing as the mode after the dash says (batch, always).
    mq-actix-batch | mq-actix-always)
        echo "${3:-$MQ} $2 $CACHE_SIZE --data-dir ${5:-$RUN_DIR} --fsync ${1#mq-actix-}" ;;
    # Persistence off; the same 64 MB per-client output limit as mq-actix's
    # --max-pending and NATS's max_pending; room for CONNS clients.
    redis) echo "redis-server --port $2 --bind 127.0.0.1 --save '' --appendonly no" \
        "--maxclients $((CONNS + 1000)) --client-output-buffer-limit 'pubsub 64mb 0 0'" ;;
    # Redis's own durability beside mq-actix's: the append-only file, synced
    # as the mode after "redis-aof-" says (everysec, always); no snapshots,
    # so the AOF is the only disk work.
    redis-aof-everysec | redis-aof-always)
        echo "redis-server --port $2 --bind 127.0.0.1 --save '' --appendonly yes" \
            "--appendfsync ${1#redis-aof-} --dir ${5:-$RUN_DIR}" \
            "--maxclients $((CONNS + 1000)) --client-output-buffer-limit 'pubsub 64mb 0 0'" ;;
    # NATS core: no JetStream, nothing persisted.
    nats) echo "nats-server -a 127.0.0.1 -p $2" ;;
    esac
}

# The server whose files a variant writes (mq-actix-tls, mq-actix-batch:
# mq-actix; redis-aof-always: redis): the case tells the variants apart.
server_slug() {
    case $1 in
    mq-actix*) echo mq-actix ;;
    redis*) echo redis ;;
    nats*) echo nats ;;
    esac
}

# Whether SERVER ($1) keeps a data directory.
is_durable() { [[ $1 == mq-actix-batch || $1 == mq-actix-always || $1 == redis-aof-* ]]; }

# Starts SERVER ($1) on a free port and waits until it accepts connections;
# sets SERVER_PID and PORT, and RUN_DIR for a durable server.
start_server() {
    local server=$1 log=$2 i
    PORT=$(free_port)
    if is_durable "$server"; then
        RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mq-results-data.XXXXXX")
    fi
    eval "exec $(server_command "$server" "$PORT")" >"$log" 2>&1 &
    SERVER_PID=$!
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            echo "$server exited at start:" >&2
            cat "$log" >&2
            SERVER_PID=
            return 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "$server did not answer on 127.0.0.1:$PORT within 10 s" >&2
    return 1
}

# A field of /proc/PID/status in KiB, or null.
proc_kib() {
    local value
    value=$(awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status" 2>/dev/null || true)
    echo "${value:-null}"
}

# --- one case: RUNS runs of loadgen against one server ---------------------

# Proto flag for a server, when loadgen has --proto.
proto_args() {
    $HAS_PROTO || return 0
    case $1 in
    mq-actix) echo "--proto mq" ;;
    redis) echo "--proto redis" ;;
    nats) echo "--proto nats" ;;
    esac
}

# run_case CASE SERVER SCENARIO [LOADGEN ARGS...]
# Writes results/data/CASE--SERVER--RUN.json (loadgen's report, with the
# server's CPU time when loadgen has --server-pid) and
# CASE--SERVER--RUN.server.json (the server's memory) for each run. A
# variant such as mq-actix-tls (mq-actix started with TLS) or
# redis-aof-always writes the files of its server (server_slug), told
# apart by their CASE.
run_case() {
    local case=$1 server=$2 scenario=$3 slug run status before hwm base extra=()
    slug=$(server_slug "$server")
    shift 3
    has "$SERVERS" "$slug" || return 0
    read -ra extra <<<"$(proto_args "$slug")"
    sample_load "at the start of $case against $server" >>"$LOAD"
    say "$case against $server ($RUNS run(s)): loadgen $scenario $*"
    for ((run = 1; run <= RUNS; run++)); do
        base=$case--$slug--$run
        rm -f "$DATA/$base.json" "$DATA/$base.server.json"
        if ! start_server "$server" "$LOGS/$base.server.log"; then
            FAILED+=("$base: $server did not start")
            return 0
        fi
        local args=("$scenario" --addr "127.0.0.1:$PORT" --quiet "${extra[@]}" "$@")
        # The server's CPU time per delivery, in every case; in conns also
        # its memory per connection.
        $HAS_SERVER_PID && args+=(--server-pid "$SERVER_PID")
        if ((run == 1)); then
            local shown="${args[*]} --json results/data/$base.json"
            shown=${shown//127.0.0.1:$PORT/127.0.0.1:\$PORT}
            shown=${shown//--server-pid $SERVER_PID/--server-pid \$SERVER_PID}
            [[ -z $TLS_DIR ]] || shown=${shown//"$TLS_DIR"/\$TLS_DIR}
            echo "$(shown_path "$LOADGEN") ${shown//--1.json/--\$RUN.json}" >>"$DATA/commands.txt"
        fi
        before=$(proc_kib "$SERVER_PID" VmRSS)
        status=0
        "$LOADGEN" "${args[@]}" --json "$DATA/$base.json" >"$LOGS/$base.txt" 2>&1 || status=$?
        hwm=$(proc_kib "$SERVER_PID" VmHWM)
        stop_server
        printf '{"server": "%s", "vm_rss_before_kib": %s, "vm_hwm_kib": %s}\n' \
            "$slug" "$before" "$hwm" >"$DATA/$base.server.json"
        sed 's/^/  /' "$LOGS/$base.txt"
        if ((status == 2)); then
            # A usage error: this loadgen does not support the case.
            echo "  loadgen refused $case against $server; skipping it"
            rm -f "$DATA/$base.json" "$DATA/$base.server.json"
            FAILED+=("$base: loadgen usage error (see $LOGS/$base.txt)")
            return 0
        elif ((status != 0)); then
            FAILED+=("$base: loadgen exit status $status (see $LOGS/$base.txt)")
        fi
        if [[ ! -s $DATA/$base.json ]]; then
            rm -f "$DATA/$base.server.json"
        fi
    done
}

# --- build, servers, data directory ---------------------------------------

# Before anything of ours runs: the only sample whose load averages say
# what the machine was doing without us.
load_before=$(sample_load "before the build")

say "building release binaries (cargo build --release --workspace)"
cargo build --release --workspace

HAS_PROTO=false
HAS_SERVER_PID=false
help=$("$LOADGEN" --help)
grep -q -- '--proto' <<<"$help" && HAS_PROTO=true
grep -q -- '--server-pid' <<<"$help" && HAS_SERVER_PID=true
if has "$SCENARIOS" tls; then
    if ! grep -q -- '--tls-ca' <<<"$help"; then
        echo "loadgen has no --tls-ca: no TLS case"
        SCENARIOS=$(tr ' ' '\n' <<<"$SCENARIOS" | grep -vx tls | tr '\n' ' ' || true)
    elif ! command -v openssl >/dev/null; then
        echo "openssl is not installed: no TLS case"
        SCENARIOS=$(tr ' ' '\n' <<<"$SCENARIOS" | grep -vx tls | tr '\n' ' ' || true)
    fi
fi
if ! $HAS_PROTO; then
    echo "loadgen has no --proto: measuring mq-actix only"
    SERVERS=$(tr ' ' '\n' <<<"$SERVERS" | grep -x mq-actix | tr '\n' ' ' || true)
fi

package_of() { case $1 in redis) echo redis-server ;; nats) echo nats-server ;; esac; }
updated=false
for server in redis nats; do
    has "$SERVERS" "$server" || continue
    binary=$(package_of "$server")
    if ! command -v "$binary" >/dev/null && [[ $INSTALL == 1 ]] && command -v apt-get >/dev/null; then
        say "installing $binary from Debian's packages"
        if ! $updated; then
            apt-get update -qq || true
            updated=true
        fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "$binary" || true
    fi
    if ! command -v "$binary" >/dev/null; then
        echo "skipping $server: $binary is not installed and could not be installed"
        SERVERS=$(tr ' ' '\n' <<<"$SERVERS" | grep -vx "$server" | tr '\n' ' ' || true)
    fi
done
echo "servers: $SERVERS"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

mkdir -p "$DATA"
if [[ $KEEP != 1 ]]; then
    rm -f "$DATA"/*--*--*.json "$DATA/commands.txt" "$LOAD"
fi
echo "$load_before" >>"$LOAD"
for server in $SERVERS; do
    # A literal $PORT: the port differs from run to run.
    # shellcheck disable=SC2016
    server_command "$server" '$PORT' "$(shown_path "$MQ")" >>"$DATA/commands.txt"
done
if has "$SCENARIOS" tls && has "$SERVERS" mq-actix; then
    # A self-signed certificate for localhost, valid for a day. Not a CA
    # (openssl's default for -x509): rustls refuses a CA's certificate as
    # the server's own.
    TLS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mq-results-tls.XXXXXX")
    certificate=(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes
        -subj /CN=localhost -addext subjectAltName=DNS:localhost
        -addext 'basicConstraints=critical,CA:FALSE' -days 1)
    if "${certificate[@]}" -keyout "$TLS_DIR/key.pem" -out "$TLS_DIR/cert.pem" \
        >"$LOGS/openssl.log" 2>&1; then
        # shellcheck disable=SC2016
        echo "${certificate[*]}"' -keyout $TLS_DIR/key.pem -out $TLS_DIR/cert.pem' \
            >>"$DATA/commands.txt"
        # shellcheck disable=SC2016
        server_command mq-actix-tls '$PORT' "$(shown_path "$MQ")" '$TLS_DIR' >>"$DATA/commands.txt"
    else
        FAILED+=("tls: openssl made no certificate (see $LOGS/openssl.log)")
        SCENARIOS=$(tr ' ' '\n' <<<"$SCENARIOS" | grep -vx tls | tr '\n' ' ' || true)
    fi
fi

if has "$SCENARIOS" durable; then
    for server in mq-actix-batch mq-actix-always redis-aof-everysec redis-aof-always; do
        has "$SERVERS" "$(server_slug "$server")" || continue
        # shellcheck disable=SC2016
        server_command "$server" '$PORT' "$(shown_path "$MQ")" '' '$DATA_DIR' >>"$DATA/commands.txt"
    done
fi

cat >"$DATA/run.json" <<EOF
{"quick": $([[ $QUICK == 1 ]] && echo true || echo false), "kept_earlier_runs": $([[ $KEEP == 1 ]] && echo true || echo false), "runs": $RUNS, "duration_s": $DURATION, "hold_s": $HOLD, "servers": $(json_list "$SERVERS"), "scenarios": $(json_list "$SCENARIOS")}
EOF

version_of() { command -v "$1" >/dev/null && "$1" --version 2>&1 | head -n 1 || echo "not installed"; }
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || revision+=" (with uncommitted changes)"
# shellcheck source=/dev/null
cat >"$DATA/machine.json" <<EOF
{
  "cpu": $(json_string "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"),
  "cores": $(nproc),
  "memory": $(json_string "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"),
  "kernel": $(json_string "$(uname -r)"),
  "os": $(json_string "$(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-unknown}")"),
  "rustc": $(json_string "$(rustc --version)"),
  "redis": $(json_string "$(version_of redis-server)"),
  "nats": $(json_string "$(version_of nats-server)"),
  "git_revision": $(json_string "$revision"),
  "date": $(json_string "$(date -u +%Y-%m-%dT%H:%M:%SZ)")
}
EOF

# --- the scenarios ---------------------------------------------------------

common=(--window 64 --size 64)
if has "$SCENARIOS" fanout; then
    for n in $FANOUT_SUBSCRIBERS; do
        for server in $SERVERS; do
            run_case "fanout-$n" "$server" fanout --clients "$n" --publishers 1 \
                --duration "$DURATION" "${common[@]}"
        done
    done
fi

if has "$SCENARIOS" tls && has "$SERVERS" mq-actix; then
    # The plain fanout of the same size is the same load without TLS.
    run_case "fanout-$TLS_SUBSCRIBERS-tls" mq-actix-tls fanout --clients "$TLS_SUBSCRIBERS" \
        --publishers 1 --duration "$DURATION" "${common[@]}" \
        --tls-ca "$TLS_DIR/cert.pem" --tls-server-name localhost
fi

if has "$SCENARIOS" latency && has "$SERVERS" mq-actix; then
    # The closed-loop maximum first, unless the fanout runs just measured it.
    probe=fanout-$LATENCY_SUBSCRIBERS
    if ! compgen -G "$DATA/$probe--mq-actix--*.json" >/dev/null; then
        run_case "$probe" mq-actix fanout --clients "$LATENCY_SUBSCRIBERS" --publishers 1 \
            --duration "$DURATION" "${common[@]}"
    fi
    probe_files=()
    for file in "$DATA/$probe"--mq-actix--*.json; do
        [[ $file == *.server.json || ! -e $file ]] || probe_files+=("$file")
    done
    if ((${#probe_files[@]} > 0)) && max=$("$RENDER" median publish_rate "${probe_files[@]}"); then
        echo "closed-loop maximum of $probe against mq-actix: $max msgs/s"
        for pct in $LATENCY_PERCENTS; do
            rate=$((max * pct / 100))
            ((rate > 0)) || rate=1
            run_case "latency-$pct" mq-actix fanout --clients "$LATENCY_SUBSCRIBERS" \
                --publishers 1 --rate "$rate" --duration "$DURATION" "${common[@]}"
        done
    else
        FAILED+=("latency: no closed-loop maximum from $probe")
    fi
fi

if has "$SCENARIOS" pairs; then
    for server in $SERVERS; do
        run_case pairs "$server" pairs --clients "$PAIRS_CLIENTS" \
            --messages $((PAIRS_CLIENTS * PAIRS_MESSAGES)) "${common[@]}"
    done
fi

if has "$SCENARIOS" queue; then
    for server in $SERVERS; do
        # Redis pub/sub has no work queue.
        [[ $server == redis ]] && continue
        run_case queue "$server" queue --clients "$QUEUE_WORKERS" \
            --publishers "$QUEUE_PUBLISHERS" --duration "$DURATION" "${common[@]}"
    done
fi

# The name a message size gives its cases: 1k for 1024 bytes, 100b for 100.
size_name() {
    if (($1 % 1024 == 0)); then echo "$(($1 / 1024))k"; else echo "${1}b"; fi
}

if has "$SCENARIOS" sizes; then
    # fanout-100 and queue again with bigger messages, each against one
    # anchor to keep the run short: Redis for fanout, NATS for the queue
    # (Redis pub/sub has no work queue).
    for size in $SIZES; do
        sized=(--window 64 --size "$size")
        for server in mq-actix redis; do
            run_case "fanout-100-$(size_name "$size")" "$server" fanout --clients 100 \
                --publishers 1 --duration "$DURATION" "${sized[@]}"
        done
        for server in mq-actix nats; do
            run_case "queue-$(size_name "$size")" "$server" queue --clients "$QUEUE_WORKERS" \
                --publishers "$QUEUE_PUBLISHERS" --duration "$DURATION" "${sized[@]}"
        done
    done
fi

if has "$SCENARIOS" durable; then
    # fanout-100, queue and pairs with mq-actix on disk, each beside Redis
    # with its append-only file synced as often (everysec beside batch,
    # always beside always); Redis has no work queue, and NATS core keeps
    # nothing. The plain cases of the same run are the in-memory figures.
    for mode in batch always; do
        aof=everysec
        [[ $mode == always ]] && aof=always
        for server in "mq-actix-$mode" "redis-aof-$aof"; do
            run_case "fanout-100-fsync-$mode" "$server" fanout --clients 100 --publishers 1 \
                --duration "$DURATION" "${common[@]}"
        done
        run_case "queue-fsync-$mode" "mq-actix-$mode" queue --clients "$QUEUE_WORKERS" \
            --publishers "$QUEUE_PUBLISHERS" --duration "$DURATION" "${common[@]}"
        for server in "mq-actix-$mode" "redis-aof-$aof"; do
            run_case "pairs-fsync-$mode" "$server" pairs --clients "$PAIRS_CLIENTS" \
                --messages $((PAIRS_CLIENTS * PAIRS_MESSAGES)) "${common[@]}"
        done
    done
fi

if has "$SCENARIOS" replay; then
    # The cache is mq's alone.
    run_case replay mq-actix replay --clients "$REPLAY_SUBSCRIBERS" --cache-size "$CACHE_SIZE" \
        --size 64
fi

if has "$SCENARIOS" conns; then
    for server in $SERVERS; do
        run_case conns "$server" conns --clients "$CONNS" --hold "$HOLD"
    done
fi

# --- criterion ------------------------------------------------------------

if [[ $BENCH == 1 ]]; then
    say "criterion benchmarks (cargo bench -p mq-actix --benches)"
    read -ra bench_args <<<"$BENCH_ARGS"
    cargo bench -p mq-actix --benches -- "${bench_args[@]}"
fi
if [[ -d $CRITERION_DIR ]]; then
    "$RENDER" criterion "$CRITERION_DIR" "$DATA/criterion.json"
else
    echo "no criterion results in $CRITERION_DIR: results/data/criterion.json left as it is"
fi

# --- charts and tables ----------------------------------------------------

sample_load "after the runs and the benchmarks" >>"$LOAD"

# One line per command, in the order first run (KEEP=1 appends to the log).
awk '!seen[$0]++' "$DATA/commands.txt" >"$DATA/commands.txt.new"
mv "$DATA/commands.txt.new" "$DATA/commands.txt"

say "charts and tables"
"$RENDER" render "$DATA" "$ROOT/results"

if ((${#FAILED[@]} > 0)); then
    say "${#FAILED[@]} run(s) failed:"
    printf '  %s\n' "${FAILED[@]}"
    exit 1
fi
say "done: results/README.md, results/*.svg and results/data/ are up to date"
