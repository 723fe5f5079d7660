# Stops a Spark daemon (SPARK_ROLE master or worker) on this node. With SPARK_DRAIN_SECONDS > 0 a worker is
# first decommissioned (SIGPWR: the master stops giving it work) and given that long for its executors to end.
spark_dirs
lock_node "$SPARK_ROLE"
case "$SPARK_ROLE" in
master) stop_daemon master "$MASTER_CLASS" ;;
worker)
    if [ "$SPARK_DRAIN_SECONDS" -gt 0 ] && pid=$(daemon_pid worker "$WORKER_CLASS"); then
        kill -PWR "$pid"
        echo "worker (pid $pid) decommissioning; waiting up to $SPARK_DRAIN_SECONDS s for its executors"
        deadline=$(($(now) + SPARK_DRAIN_SECONDS))
        url="http://$SPARK_MASTER_IP:$SPARK_MASTER_WEBUI_PORT/json/"
        while used=$(spark_probe cores-used "$url" "$NODE_IP") && [ "$used" -gt 0 ]; do
            if [ "$(now)" -ge "$deadline" ]; then
                echo "worker still uses $used cores after $SPARK_DRAIN_SECONDS s; stopping it anyway" >&2
                break
            fi
            sleep 1
        done
    fi
    stop_daemon worker "$WORKER_CLASS"
    ;;
*) fail "SPARK_ROLE must be master or worker, not '$SPARK_ROLE'" ;;
esac
