"""The deployment reconciler: plain Python that the Airflow tasks call (submit, provision, configure, verify)."""
