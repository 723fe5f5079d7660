# Shared by the Mesos configure scripts (POSIX sh). Needs: DODAS_RUNTIME (docker, podman or a recorder),
# DODAS_MESOS_STATE (this node's config dir), DODAS_WAIT_SECONDS. Containers run with host networking and
# restart=always; each carries a label with the digest of its configuration, so a rerun with the same
# configuration starts nothing and a changed configuration replaces exactly the containers it concerns.
set -eu
umask 077

fail() {
    echo "error: $*" >&2
    exit 1
}

rt() {
    "$DODAS_RUNTIME" "$@"
}

# write_file PATH: stdin to PATH (mode 600) only when the content differs; prints "changed" or "same".
write_file() {
    _tmp="$1.new.$$"
    cat >"$_tmp"
    chmod 600 "$_tmp"
    if [ -f "$1" ] && cmp -s "$_tmp" "$1"; then
        rm -f "$_tmp"
        echo same
    else
        mv -f "$_tmp" "$1"
        echo changed
    fi
}

# env_line NAME VALUE: one KEY=VALUE line of a docker --env-file (values may not hold newlines).
env_line() {
    case "$2" in
    *"
"*) fail "the value of $1 holds a newline; it cannot go into an env file" ;;
    esac
    printf '%s=%s\n' "$1" "$2"
}

# curl_quote VALUE: VALUE as a double-quoted string of a curl config file.
curl_quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed 's/[\\"]/\\&/g')"
}

# digest FILE WORDS...: sha256 (16 hex) of FILE's content and the words (image, options, arguments).
digest() {
    _file=$1
    shift
    { cat "$_file"; printf '%s\n' "$@"; } | sha256sum | cut -c1-16
}

# container_state NAME: "running <digest>", "stopped <digest>" or "absent".
container_state() {
    if ! _state=$(rt inspect -f '{{.State.Running}} {{index .Config.Labels "dodas.config"}}' "$1" 2>/dev/null); then
        echo absent
        return 0
    fi
    case "$_state" in
    true*) echo "running ${_state#* }" ;;
    *) echo "stopped ${_state#* }" ;;
    esac
}

# ensure_container NAME DIGEST RUN-ARGS...: makes container NAME run `run RUN-ARGS` (options, image, command).
# Same digest and running: nothing happens. Same digest, stopped: started again. Other digest: replaced.
ensure_container() {
    _name=$1 _digest=$2
    shift 2
    _state=$(container_state "$_name")
    case "$_state" in
    "running $_digest")
        echo "$_name unchanged (running)"
        return 0
        ;;
    "stopped $_digest")
        rt start "$_name" >/dev/null
        echo "$_name restarted"
        return 0
        ;;
    absent) ;;
    *)
        echo "$_name runs another configuration; replacing it"
        rt rm -f "$_name" >/dev/null
        ;;
    esac
    rt run -d --name "$_name" --restart always --network host --label "dodas.config=$_digest" "$@" >/dev/null
    echo "$_name started"
}

# wait_running NAME...: every NAME's container runs, or fail after DODAS_WAIT_SECONDS naming the one that does not.
wait_running() {
    _deadline=$(($(date +%s) + DODAS_WAIT_SECONDS))
    for _name in "$@"; do
        until [ "$(rt inspect -f '{{.State.Running}}' "$_name" 2>/dev/null || true)" = true ]; do
            if [ "$(date +%s)" -ge "$_deadline" ]; then
                rt logs --tail 20 "$_name" >&2 2>&1 || true
                fail "container $_name is not running after $DODAS_WAIT_SECONDS s"
            fi
            sleep 1
        done
    done
}

# wait_http URL CURLRC: URL answers with a 2xx (curl -K CURLRC for credentials and CA), or fail after
# DODAS_WAIT_SECONDS with curl's last error: a running container is not yet a service that answers.
wait_http() {
    _deadline=$(($(date +%s) + DODAS_WAIT_SECONDS))
    until _err=$(curl -sS -f -o /dev/null --max-time 10 -K "$2" "$1" 2>&1); do
        if [ "$(date +%s)" -ge "$_deadline" ]; then
            fail "$1 does not answer after $DODAS_WAIT_SECONDS s: $_err"
        fi
        sleep 1
    done
}

# lock_node: one configure script at a time on this node (fd 9 held until the script ends).
lock_node() {
    mkdir -p "$DODAS_MESOS_STATE"
    command -v flock >/dev/null || return 0
    exec 9>"$DODAS_MESOS_STATE/.lock"
    flock -w "$DODAS_WAIT_SECONDS" 9 || fail "another Mesos configure script is still running on this node"
}
