# Shared by the Spark standalone scripts (POSIX sh). Needs: NODE_IP, SPARK_HOME, JAVA_HOME, PYSPARK_PYTHON,
# DODAS_WAIT_SECONDS. Everything a node writes lives under $HOME/spark (the node's sandbox on the local cloud).
set -eu

MASTER_CLASS=org.apache.spark.deploy.master.Master
WORKER_CLASS=org.apache.spark.deploy.worker.Worker

fail() {
    echo "error: $*" >&2
    exit 1
}

# spark_dirs: point Spark's conf, logs, pids, work and scratch dirs into this node's home, bound to NODE_IP.
spark_dirs() {
    [ -x "$SPARK_HOME/bin/spark-class" ] || fail "no Spark at SPARK_HOME=$SPARK_HOME (pip install pyspark)"
    [ -x "$JAVA_HOME/bin/java" ] || fail "no java at JAVA_HOME=$JAVA_HOME"
    SPARK_BASE="$HOME/spark"
    export SPARK_CONF_DIR="$SPARK_BASE/conf" SPARK_LOG_DIR="$SPARK_BASE/logs" SPARK_PID_DIR="$SPARK_BASE/run"
    export SPARK_WORKER_DIR="$SPARK_BASE/work" SPARK_LOCAL_DIRS="$SPARK_BASE/scratch"
    export SPARK_LOCAL_IP="$NODE_IP" SPARK_LOCAL_HOSTNAME="$NODE_IP"
    mkdir -p "$SPARK_CONF_DIR" "$SPARK_LOG_DIR" "$SPARK_PID_DIR" "$SPARK_WORKER_DIR" "$SPARK_LOCAL_DIRS"
}

# spark_conf: writes this node's spark-defaults.conf (mode 0600) from SPARK_AUTH_SECRET: every RPC between master,
# workers, drivers and executors authenticates with the deployment's secret, and the master serves no REST
# submission port. The secret then leaves the environment, so the daemons started next do not carry it.
spark_conf() {
    [ -n "${SPARK_AUTH_SECRET:-}" ] || fail "no SPARK_AUTH_SECRET: Spark runs with authentication only"
    _conf="$SPARK_CONF_DIR/spark-defaults.conf"
    rm -f "$_conf.tmp"
    (
        umask 077
        {
            echo "spark.authenticate true"
            echo "spark.authenticate.secret $SPARK_AUTH_SECRET"
            echo "spark.master.rest.enabled false"
        } >"$_conf.tmp"
    )
    mv -f "$_conf.tmp" "$_conf"
    unset SPARK_AUTH_SECRET
}

# conf_digest: a short digest of this node's spark-defaults.conf (a daemon started with another one is restarted).
conf_digest() {
    sha256sum "$SPARK_CONF_DIR/spark-defaults.conf" 2>/dev/null | cut -c1-12
}

# spark_probe MODE URL [HOST]: asks a master's /json/; MODE master: it is ALIVE; worker: HOST is an ALIVE
# worker there; cores-used: prints HOST's used cores (0 when absent). Proxies are bypassed (loopback IPs).
spark_probe() {
    "$PYSPARK_PYTHON" - "$@" <<'PY'
import json, sys, urllib.request
mode, url, host = (sys.argv[1:] + [""])[:3]
try:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    state = json.load(opener.open(url, timeout=5))
except Exception:
    sys.exit(1)
workers = [w for w in state.get("workers", []) if w.get("host") == host]
if mode == "master":
    sys.exit(0 if state.get("status") == "ALIVE" else 1)
if mode == "worker":
    sys.exit(0 if any(w.get("state") == "ALIVE" for w in workers) else 1)
if mode == "cores-used":
    print(sum(w.get("coresused", 0) for w in workers if w.get("state") != "DEAD"))
    sys.exit(0)
sys.exit(2)
PY
}

# daemon_pid NAME CLASS: prints the pid in NAME's pid file if that process is alive and runs CLASS.
daemon_pid() {
    [ -s "$SPARK_PID_DIR/$1.pid" ] || return 1
    _pid=$(cat "$SPARK_PID_DIR/$1.pid")
    [ -r "/proc/$_pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$_pid/cmdline" | grep -q -- "$2" || return 1
    echo "$_pid"
}

# now: seconds since the epoch.
now() {
    date +%s
}

# log_tail NAME: the first errors and the last lines of NAME's log, to explain a failure.
log_tail() {
    _log="$SPARK_LOG_DIR/$1.out"
    echo "--- first errors in $_log ---" >&2
    grep -E 'ERROR|Exception|Error:' "$_log" 2>/dev/null | grep -v -E '^[[:space:]]+at ' | head -n 5 >&2 || true
    echo "--- last lines of $_log ---" >&2
    tail -n 10 "$_log" >&2 2>/dev/null || true
}

# start_daemon NAME CLASS ARGS...: starts bin/spark-class CLASS ARGS in the background (it execs the JVM, so
# the pid stays right), output to $SPARK_LOG_DIR/NAME.out (the previous one kept as NAME.out.1).
start_daemon() {
    _name=$1
    shift
    [ -f "$SPARK_LOG_DIR/$_name.out" ] && mv -f "$SPARK_LOG_DIR/$_name.out" "$SPARK_LOG_DIR/$_name.out.1"
    nohup "$SPARK_HOME/bin/spark-class" "$@" >"$SPARK_LOG_DIR/$_name.out" 2>&1 </dev/null 9>&- &
    echo "$!" >"$SPARK_PID_DIR/$_name.pid"
    echo "$_name started (pid $!)"
}

# stop_daemon NAME CLASS: SIGTERM, wait up to 30 s, then SIGKILL; a worker's leftover executors are killed too.
stop_daemon() {
    if ! _pid=$(daemon_pid "$1" "$2"); then
        echo "$1 is not running"
        rm -f "$SPARK_PID_DIR/$1.pid"
        return 0
    fi
    kill -TERM "$_pid" 2>/dev/null || true
    _deadline=$(($(now) + 30))
    while daemon_pid "$1" "$2" >/dev/null; do
        if [ "$(now)" -ge "$_deadline" ]; then
            echo "$1 (pid $_pid) ignored SIGTERM for 30 s: killing it" >&2
            kill -KILL "$_pid" 2>/dev/null || true
        fi
        sleep 0.2
    done
    rm -f "$SPARK_PID_DIR/$1.pid" "$SPARK_PID_DIR/$1.args"
    [ "$2" != "$WORKER_CLASS" ] || kill_strays "$SPARK_WORKER_DIR"
    echo "$1 stopped (pid $_pid)"
}

# kill_strays DIR: SIGKILLs processes whose working directory is under DIR (executors of a killed worker).
kill_strays() {
    for _proc in /proc/[0-9]*; do
        _cwd=$(readlink "$_proc/cwd" 2>/dev/null) || continue
        case "$_cwd/" in
        "$1"/*) kill -KILL "${_proc#/proc/}" 2>/dev/null && echo "killed stray process ${_proc#/proc/} in $_cwd" ;;
        esac
    done
    return 0
}

# wait_ready NAME CLASS WHAT CHECK...: polls CHECK until it succeeds, failing when the daemon dies or after
# DODAS_WAIT_SECONDS.
wait_ready() {
    _name=$1 _class=$2 _what=$3
    shift 3
    _deadline=$(($(now) + DODAS_WAIT_SECONDS))
    until "$@"; do
        if ! daemon_pid "$_name" "$_class" >/dev/null; then
            log_tail "$_name"
            fail "$_name exited before $_what"
        fi
        if [ "$(now)" -ge "$_deadline" ]; then
            log_tail "$_name"
            fail "$_name: no $_what after $DODAS_WAIT_SECONDS s"
        fi
        sleep 0.5
    done
}

# lock_node NAME: holds NAME's lock (fd 9) until the script ends, so two runs at once cannot start two daemons.
lock_node() {
    command -v flock >/dev/null || return 0
    exec 9>"$SPARK_PID_DIR/$1.lock"
    flock -w "$DODAS_WAIT_SECONDS" 9 || fail "another script still handles the $1 on this node"
}

# ensure_daemon NAME CLASS WHAT CHECK ARGS...: makes NAME run CLASS ARGS and waits until CHECK passes.
# A run with the same ARGS and spark-defaults.conf that passes CHECK is left alone; one with other ARGS (new
# master, cores, memory) or configuration is restarted. CHECK is one word (a function name).
ensure_daemon() {
    _name=$1 _class=$2 _what=$3 _check=$4
    shift 4
    lock_node "$_name"
    _want="$_class $* (conf $(conf_digest))"
    _have=$(cat "$SPARK_PID_DIR/$_name.args" 2>/dev/null || true)
    if _pid=$(daemon_pid "$_name" "$_class"); then
        if [ "$_have" != "$_want" ]; then
            echo "$_name (pid $_pid) runs '$_have'; restarting it as '$_want'"
            stop_daemon "$_name" "$_class"
            _pid=""
        elif "$_check"; then
            echo "$_name already running and ready (pid $_pid)"
            return 0
        else
            echo "$_name running (pid $_pid), waiting for $_what"
        fi
    fi
    if [ -z "$_pid" ]; then
        start_daemon "$_name" "$_class" "$@"
        printf '%s\n' "$_want" >"$SPARK_PID_DIR/$_name.args"
    fi
    wait_ready "$_name" "$_class" "$_what" "$_check"
}
