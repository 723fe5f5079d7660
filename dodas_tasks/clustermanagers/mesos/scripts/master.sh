# A Mesos master node: ZooKeeper (ensemble member), Mesos master, Marathon and, if asked, Chronos.
# Needs (from the framework): NODE_IP, ZK_MYID, ZK_SERVERS, ZK_CONNECT, MESOS_QUORUM, MESOS_CLUSTER_NAME,
# MESOS_PORT, MARATHON_HTTP_PORT, MARATHON_HTTPS_PORT, CHRONOS_HTTP_PORT, CHRONOS_HTTPS_PORT, *_IMAGE,
# MESOS_MASTER_COMMAND. Template properties arrive as TOSCA_PROPERTY_* (credentials among them: they go
# into mode-600 files and env files, never onto a command line).
lock_node
S="$DODAS_MESOS_STATE"
mkdir -p "$S/zookeeper/data" "$S/zookeeper/datalog" "$S/mesos/work" "$S/mesos/log" "$S/marathon/ssl" "$S/chronos"

MESOS_AUTH=${TOSCA_PROPERTY_MESOS_AUTHENTICATE_HTTP:-true}
MESOS_USER=${TOSCA_PROPERTY_MESOS_USERNAME:-admin}
MESOS_PASS=${TOSCA_PROPERTY_MESOS_PASSWORD:-}
MARATHON_SSL=${TOSCA_PROPERTY_MARATHON_ENABLE_SSL:-true}
MARATHON_USER=${TOSCA_PROPERTY_MARATHON_USERNAME:-admin}
MARATHON_PASS=${TOSCA_PROPERTY_MARATHON_PASSWORD:-}
CHRONOS=${TOSCA_PROPERTY_ENABLE_CHRONOS:-false}
CHRONOS_SSL=${TOSCA_PROPERTY_CHRONOS_ENABLE_SSL:-true}
CHRONOS_USER=${TOSCA_PROPERTY_CHRONOS_USERNAME:-admin}
CHRONOS_PASS=${TOSCA_PROPERTY_CHRONOS_PASSWORD:-}
[ -n "$MARATHON_PASS" ] || fail "marathon_password is empty: give the template's marathon_password input"
if [ "$MESOS_AUTH" = true ] && [ -z "$MESOS_PASS" ]; then
    fail "mesos_authenticate_http is true but mesos_password is empty"
fi
if [ "$CHRONOS" = true ] && [ -z "$CHRONOS_PASS" ]; then
    fail "enable_chronos is true but chronos_password is empty"
fi

# --- ZooKeeper: MYID/SERVERS (INDIGO image) and ZOO_MY_ID/ZOO_SERVERS (official image) -----------------
{
    env_line MYID "$ZK_MYID"
    env_line SERVERS "$ZK_SERVERS"
    env_line ZOO_MY_ID "$ZK_MYID"
    env_line ZOO_SERVERS "$ZK_ENSEMBLE"
    env_line ZOO_4LW_COMMANDS_WHITELIST "ruok,mntr,srvr"
} | write_file "$S/zookeeper/env" >/dev/null
set -- -v "$S/zookeeper/data:/data" -v "$S/zookeeper/datalog:/datalog" --env-file "$S/zookeeper/env" "$ZOOKEEPER_IMAGE"
ensure_container dodas-zookeeper "$(digest "$S/zookeeper/env" "$@")" "$@"

# --- Mesos master ----------------------------------------------------------------------------------------
printf '{"credentials": [{"principal": "%s", "secret": "%s"}]}\n' \
    "$(printf '%s' "$MESOS_USER" | sed 's/[\\"]/\\&/g')" "$(printf '%s' "$MESOS_PASS" | sed 's/[\\"]/\\&/g')" |
    write_file "$S/mesos/credentials.json" >/dev/null
printf 'user = %s\n' "$(curl_quote "$MESOS_USER:$MESOS_PASS")" | write_file "$S/mesos/curlrc" >/dev/null
{
    env_line MESOS_ZK "zk://$ZK_CONNECT/mesos"
    env_line MESOS_QUORUM "$MESOS_QUORUM"
    env_line MESOS_CLUSTER "$MESOS_CLUSTER_NAME"
    env_line MESOS_IP "$NODE_IP"
    env_line MESOS_HOSTNAME "$NODE_IP"
    env_line MESOS_PORT "$MESOS_PORT"
    env_line MESOS_OFFER_TIMEOUT 30secs
    env_line MESOS_REGISTRY replicated_log
    env_line MESOS_WORK_DIR /var/lib/mesos
    env_line MESOS_LOG_DIR /var/log/mesos
    if [ "$MESOS_AUTH" = true ]; then
        env_line MESOS_AUTHENTICATE_HTTP_READWRITE true
        env_line MESOS_AUTHENTICATE_HTTP_READONLY true
        env_line MESOS_HTTP_CREDENTIALS /etc/mesos/credentials.json
    fi
} | write_file "$S/mesos/master.env" >/dev/null
set -- -v "$S/mesos/work:/var/lib/mesos" -v "$S/mesos/log:/var/log/mesos" \
    -v "$S/mesos/credentials.json:/etc/mesos/credentials.json:ro" --env-file "$S/mesos/master.env" \
    "$MESOS_IMAGE" "$MESOS_MASTER_COMMAND"
ensure_container dodas-mesos-master "$(digest "$S/mesos/master.env" "$@" "$(sha256sum <"$S/mesos/credentials.json")")" "$@"
echo "http://$NODE_IP:$MESOS_PORT" | write_file "$S/mesos/url" >/dev/null

# --- TLS for Marathon and Chronos: a self-signed certificate for this node's IP, in a PKCS#12 keystore ---
if [ "$MARATHON_SSL" = true ] || { [ "$CHRONOS" = true ] && [ "$CHRONOS_SSL" = true ]; }; then
    if ! [ -s "$S/marathon/ssl/keystore.p12" ] || [ "$(cat "$S/marathon/ssl/ip" 2>/dev/null || true)" != "$NODE_IP" ]; then
        [ -s "$S/marathon/ssl/keystore.pass" ] || od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$S/marathon/ssl/keystore.pass"
        openssl req -x509 -newkey rsa:2048 -nodes -days 825 -subj "/CN=$NODE_IP" \
            -addext "subjectAltName=IP:$NODE_IP" -keyout "$S/marathon/ssl/key.pem" -out "$S/marathon/ssl/cert.pem" 2>/dev/null
        openssl pkcs12 -export -name marathon -in "$S/marathon/ssl/cert.pem" -inkey "$S/marathon/ssl/key.pem" \
            -passout "file:$S/marathon/ssl/keystore.pass" -out "$S/marathon/ssl/keystore.p12"
        chmod 600 "$S/marathon/ssl/key.pem" "$S/marathon/ssl/keystore.p12"
        echo "$NODE_IP" >"$S/marathon/ssl/ip"
        echo "TLS certificate made for $NODE_IP"
    fi
fi
KEYSTORE_PASS=$(cat "$S/marathon/ssl/keystore.pass" 2>/dev/null || true)

# --- Marathon --------------------------------------------------------------------------------------------
{
    env_line MARATHON_MASTER "zk://$ZK_CONNECT/mesos"
    env_line MARATHON_ZK "zk://$ZK_CONNECT/marathon"
    env_line MARATHON_HOSTNAME "$NODE_IP"
    env_line MARATHON_HTTP_ADDRESS "$NODE_IP"
    env_line MARATHON_HTTP_CREDENTIALS "$MARATHON_USER:$MARATHON_PASS"
    env_line MARATHON_HTTP_PORT "$MARATHON_HTTP_PORT"
    if [ "$MARATHON_SSL" = true ]; then
        env_line MARATHON_HTTPS_ADDRESS "$NODE_IP"
        env_line MARATHON_HTTPS_PORT "$MARATHON_HTTPS_PORT"
        env_line MARATHON_SSL_KEYSTORE_PATH /etc/marathon/ssl/keystore.p12
        env_line MARATHON_SSL_KEYSTORE_PASSWORD "$KEYSTORE_PASS"
        env_line MARATHON_DISABLE_HTTP true
    fi
} | write_file "$S/marathon/env" >/dev/null
if [ "$MARATHON_SSL" = true ]; then
    MARATHON_URL="https://$NODE_IP:$MARATHON_HTTPS_PORT"
    printf 'user = %s\ncacert = %s\n' "$(curl_quote "$MARATHON_USER:$MARATHON_PASS")" \
        "$(curl_quote "$S/marathon/ssl/cert.pem")" | write_file "$S/marathon/curlrc" >/dev/null
else
    MARATHON_URL="http://$NODE_IP:$MARATHON_HTTP_PORT"
    printf 'user = %s\n' "$(curl_quote "$MARATHON_USER:$MARATHON_PASS")" | write_file "$S/marathon/curlrc" >/dev/null
fi
echo "$MARATHON_URL" | write_file "$S/marathon/url" >/dev/null
set -- -v "$S/marathon/ssl:/etc/marathon/ssl:ro" --env-file "$S/marathon/env" "$MARATHON_IMAGE"
ensure_container dodas-marathon "$(digest "$S/marathon/env" "$@" "$(sha256sum <"$S/marathon/ssl/ip" 2>/dev/null || true)")" "$@"

# --- Chronos (optional) ----------------------------------------------------------------------------------
if [ "$CHRONOS" = true ]; then
    {
        env_line CHRONOS_MASTER "zk://$ZK_CONNECT/mesos"
        env_line CHRONOS_ZK_HOSTS "$ZK_CONNECT"
        env_line CHRONOS_ZK_PATH /chronos/state
        env_line CHRONOS_HOSTNAME "$NODE_IP"
        env_line CHRONOS_HTTP_PORT "$CHRONOS_HTTP_PORT"
        env_line CHRONOS_HTTP_CREDENTIALS "$CHRONOS_USER:$CHRONOS_PASS"
        env_line CHRONOS_DISABLE_AFTER_FAILURES 1
        if [ "$CHRONOS_SSL" = true ]; then
            env_line CHRONOS_HTTPS_PORT "$CHRONOS_HTTPS_PORT"
            env_line CHRONOS_SSL_KEYSTORE_PATH /etc/chronos/ssl/keystore.p12
            env_line CHRONOS_SSL_KEYSTORE_PASSWORD "$KEYSTORE_PASS"
        fi
    } | write_file "$S/chronos/env" >/dev/null
    set -- -v "$S/marathon/ssl:/etc/chronos/ssl:ro" --env-file "$S/chronos/env" "$CHRONOS_IMAGE"
    ensure_container dodas-chronos "$(digest "$S/chronos/env" "$@")" "$@"
    wait_running dodas-zookeeper dodas-mesos-master dodas-marathon dodas-chronos
else
    if [ "$(container_state dodas-chronos)" != absent ]; then
        rt rm -f dodas-chronos >/dev/null
        echo "dodas-chronos removed (enable_chronos is false)"
    fi
    wait_running dodas-zookeeper dodas-mesos-master dodas-marathon
fi
# Frameworks are posted to Marathon as soon as this script ends: ready means Mesos and Marathon answer.
wait_http "http://$NODE_IP:$MESOS_PORT/master/health" "$S/mesos/curlrc"
wait_http "$MARATHON_URL/ping" "$S/marathon/curlrc"
echo "mesos master ready on $NODE_IP (ZooKeeper id $ZK_MYID, quorum $MESOS_QUORUM, Marathon $MARATHON_URL)"
