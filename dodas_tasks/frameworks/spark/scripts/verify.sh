# Runs SparkPi (the Python example shipped with pyspark) against the master from this node; prints its output.
# The driver authenticates with the node's spark-defaults.conf (spark.authenticate and the deployment's secret).
# Needs: SPARK_MASTER_IP, SPARK_MASTER_PORT, SPARK_VERIFY_EXECUTOR_MEMORY_MB, SPARK_VERIFY_PARTITIONS.
spark_dirs
[ -s "$SPARK_CONF_DIR/spark-defaults.conf" ] || fail "no spark-defaults.conf in $SPARK_CONF_DIR: the master is not set up here"
pi_py="$SPARK_HOME/examples/src/main/python/pi.py"
[ -f "$pi_py" ] || fail "the SparkPi example is missing at $pi_py (this pyspark ships no examples)"
command -v timeout >/dev/null || fail "the timeout command (coreutils) is missing on this node"
log="$SPARK_LOG_DIR/verify.out"
status=0
timeout "$DODAS_WAIT_SECONDS" "$SPARK_HOME/bin/spark-submit" \
    --master "spark://$SPARK_MASTER_IP:$SPARK_MASTER_PORT" \
    --executor-memory "${SPARK_VERIFY_EXECUTOR_MEMORY_MB}m" \
    --conf spark.ui.enabled=false \
    "$pi_py" "$SPARK_VERIFY_PARTITIONS" 2>"$log" </dev/null || status=$?
if [ "$status" -eq 124 ]; then
    tail -n 15 "$log" >&2
    fail "SparkPi did not finish within $DODAS_WAIT_SECONDS s: is an ALIVE worker with" \
        "${SPARK_VERIFY_EXECUTOR_MEMORY_MB} MB free registered? (log: $log)"
elif [ "$status" -ne 0 ]; then
    tail -n 25 "$log" >&2
    fail "SparkPi failed with exit status $status (log: $log)"
fi
