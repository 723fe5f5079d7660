"""Deferrable triggers: waits run in the triggerer, holding no worker slot (classpaths are stored with each
deferred task: moving a trigger strands the tasks deferred on the old path)."""
