"""Batch jobs: corpus readers, output shards, the local engine, the Ray engine and its actor, progress."""
