"""Elasticity and healing outside the cluster: a pure policy, what it observes, and what its decisions do.

Replaces CLUES (which ran inside each cluster): decisions only change desired state in the store and ask the
deployment DAG to reconcile, so they queue behind a running change instead of being refused.
"""
