"""The Airflow glue, thin over the library: operators, deferrable triggers, hooks (connections) and DAG factories.

Only this package (and the DAG files calling its factories) imports Airflow; the library below it is plain Python.
"""
