"""Operators: the tasks of a deployment DAG run, and the elasticity watch."""
