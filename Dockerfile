# The DODAS on Airflow image: Airflow's official 3.3.2 image with this project installed, every dependency pinned
# in pyproject.toml (apache-airflow==3.3.2 among them, so pip never moves Airflow itself). docker-compose.yml builds
# it; DAGs, plugins and templates are part of the image, so every container runs the same code.
FROM apache/airflow:3.3.2-python3.11

USER root
# Folders the compose file's named volumes mount: created here so the volumes start owned by the airflow user.
RUN mkdir -p /opt/dodas-airflow /opt/airflow/auth /opt/airflow/dodas \
    && chown -R airflow:0 /opt/dodas-airflow /opt/airflow/auth /opt/airflow/dodas \
    && chmod -R g+rwX /opt/airflow/auth /opt/airflow/dodas
USER airflow

COPY --chown=airflow:0 pyproject.toml README.md /opt/dodas-airflow/
COPY --chown=airflow:0 dodas_tasks /opt/dodas-airflow/dodas_tasks
COPY --chown=airflow:0 dags /opt/dodas-airflow/dags
COPY --chown=airflow:0 plugins /opt/dodas-airflow/plugins
COPY --chown=airflow:0 templates /opt/dodas-airflow/templates
# Editable: the DAG factories find templates/ beside the package, as in a checkout. [spark]: the local cloud's Spark
# clusters run on the workers themselves; [postgres]: psycopg 3 for Airflow's and the store's databases.
RUN pip install --no-cache-dir "apache-airflow==3.3.2" -e "/opt/dodas-airflow[spark,postgres]"
