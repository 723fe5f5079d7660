# Starts a Spark standalone worker on NODE_IP for the master at SPARK_MASTER_IP (idempotent; a worker started
# for another master, or with other cores/memory, is restarted) and waits until the master lists it ALIVE.
# Needs: SPARK_MASTER_IP, SPARK_MASTER_PORT, SPARK_MASTER_WEBUI_PORT, SPARK_WORKER_CORES, SPARK_WORKER_MEMORY_MB,
# SPARK_WORKER_WEBUI_PORT, SPARK_AUTH_SECRET. Decommissioning is on, so SIGPWR drains the worker (see stop.sh).
spark_dirs
spark_conf
# decommissioning lets stop.sh drain the worker; cleanup removes finished apps' work dirs (after 7 days)
export SPARK_WORKER_OPTS="-Dspark.decommission.enabled=true -Dspark.worker.cleanup.enabled=true ${SPARK_WORKER_OPTS:-}"
master_url="spark://$SPARK_MASTER_IP:$SPARK_MASTER_PORT"
worker_registered() {
    spark_probe worker "http://$SPARK_MASTER_IP:$SPARK_MASTER_WEBUI_PORT/json/" "$NODE_IP"
}
ensure_daemon worker "$WORKER_CLASS" "ALIVE registration at $master_url" worker_registered \
    --host "$NODE_IP" --webui-port "$SPARK_WORKER_WEBUI_PORT" \
    --cores "$SPARK_WORKER_CORES" --memory "${SPARK_WORKER_MEMORY_MB}m" "$master_url"
echo "spark worker ready on $NODE_IP for $master_url (pid $(cat "$SPARK_PID_DIR/worker.pid"))"
