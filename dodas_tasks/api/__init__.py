"""The INDIGO PaaS orchestrator REST API over DODAS on Airflow: `app.create_app` builds it, `in_airflow` serves it
from Airflow's api-server (plugins/dodas_plugin.py).

Top layer: it imports deploy/, store/, iam/ and tosca/; nothing imports it but the plugin. Importing this package
is cheap on purpose: every Airflow process (each task too) imports the plugins.
"""
