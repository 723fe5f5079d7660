"""Hooks: what the glue reads from Airflow connections (the IdP, the site's Marathon and Chronos, this Airflow's
REST API) and the DODAS store as one Airflow process shares it."""
