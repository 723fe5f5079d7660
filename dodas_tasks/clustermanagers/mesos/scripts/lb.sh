# marathon-lb (HAProxy) exposing Marathon apps labelled HAPROXY_GROUP=external on their service ports.
# Needs: MARATHON_URLS (space-separated), MARATHON_LB_IMAGE, MARATHON_LB_GROUP.
lock_node
S="$DODAS_MESOS_STATE"
mkdir -p "$S/lb"
LB_PASS=${TOSCA_PROPERTY_MARATHON_PASSWORD:-}
[ -n "$LB_PASS" ] || fail "marathon_password is empty: marathon-lb cannot read Marathon"
printf '%s:%s\n' "${TOSCA_PROPERTY_MARATHON_USERNAME:-admin}" "$LB_PASS" | write_file "$S/lb/credentials" >/dev/null
env_line PORTS 9090 | write_file "$S/lb/env" >/dev/null
# shellcheck disable=SC2086 # MARATHON_URLS is a list of URLs (no spaces inside one)
set -- -v "$S/lb/credentials:/etc/marathon-lb/credentials:ro" --env-file "$S/lb/env" "$MARATHON_LB_IMAGE" \
    sse --group "$MARATHON_LB_GROUP" --marathon-auth-credential-file /etc/marathon-lb/credentials \
    --marathon $MARATHON_URLS
ensure_container dodas-marathon-lb "$(digest "$S/lb/env" "$@" "$(sha256sum <"$S/lb/credentials")")" "$@"
wait_running dodas-marathon-lb
echo "marathon-lb ready on $NODE_IP for $MARATHON_URLS"
