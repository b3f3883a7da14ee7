"""The `longvec bench` harness: runner, worker processes, workloads, report."""
