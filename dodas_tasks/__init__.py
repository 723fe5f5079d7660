"""DODAS on Airflow: the plain-Python library (compiler, store, clouds, configuration, frameworks)."""

__version__ = "0.1.0"
