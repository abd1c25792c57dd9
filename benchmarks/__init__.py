"""timecrisis benchmarks: `make bench` (or `python -m benchmarks [--quick]`).

One module per workload (`w1_enqueue`, `w2_drain` for W2/W4/fork mode, `w3_latency`,
`w5_history`, `w6_sync` for the blocking twins), the systems under test behind one interface
(`systems`, `peers/`), the worker application (`app`, `app_fork`, `handlers`), one measurement
per process (`case`), and the runner that interleaves them and prints the table (`runner`,
`report`). `fork_overhead.py` is a standalone, finer breakdown of fork mode's per-job cost. See
docs/performance.md.
"""
