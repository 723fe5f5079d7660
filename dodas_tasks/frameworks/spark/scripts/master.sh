# Starts the Spark standalone master on NODE_IP (idempotent) and waits until its web UI reports it ALIVE. It
# authenticates every RPC and serves no REST submission port (spark_conf); its web UI binds to NODE_IP
# (SPARK_LOCAL_IP). Needs: SPARK_MASTER_PORT, SPARK_MASTER_WEBUI_PORT, SPARK_AUTH_SECRET.
spark_dirs
spark_conf
# a taken port fails the start instead of Spark silently moving to the next port (workers expect these)
export SPARK_MASTER_OPTS="-Dspark.port.maxRetries=0 ${SPARK_MASTER_OPTS:-}"
master_ready() {
    spark_probe master "http://$NODE_IP:$SPARK_MASTER_WEBUI_PORT/json/"
}
ensure_daemon master "$MASTER_CLASS" "ALIVE master at http://$NODE_IP:$SPARK_MASTER_WEBUI_PORT/json/" \
    master_ready \
    --host "$NODE_IP" --port "$SPARK_MASTER_PORT" --webui-port "$SPARK_MASTER_WEBUI_PORT"
echo "spark master ready: spark://$NODE_IP:$SPARK_MASTER_PORT (pid $(cat "$SPARK_PID_DIR/master.pid"))"
