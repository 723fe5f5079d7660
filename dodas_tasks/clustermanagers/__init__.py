"""Cluster managers set up over SSH in the configure stage (Mesos: ZooKeeper, masters, Marathon, agents, LB)."""
