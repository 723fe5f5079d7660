# Checks that Spark and Java are usable on this node (on the local cloud they come from the shared venv).
spark_dirs
"$JAVA_HOME/bin/java" -version 2>&1 | grep -v '^Picked up JAVA_TOOL_OPTIONS' | head -n 1
[ -f "$SPARK_HOME/jars/spark-core_2.13-$SPARK_VERSION.jar" ] || fail "SPARK_HOME=$SPARK_HOME is not Spark $SPARK_VERSION"
echo "spark $SPARK_VERSION at $SPARK_HOME"
