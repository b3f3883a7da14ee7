"""The benchmark harness behind `longvec bench`: repository-only, out of the wheel (it runs the peers and
scripts of bench/). Import it with bench/ on sys.path, as bench's scripts have it: `from harness.markdown import
table`."""
