"""Measuring sluice: the paper's benchmark and the tools behind its figures.

| module         | what                                                                    |
| -------------- | ----------------------------------------------------------------------- |
| perf           | ``sluice perf produce|consume``: one producer's or consumer's throughput |
| bench          | ``make bench`` (``python -m cluster.tools.bench``): the paper's section 5 |
|                | on a fresh one-broker cluster, beside the paper's figures               |
| dashboard_cost | what the dashboards' sampling costs each process (docs/dashboard.md)    |
| dump_log_bench | ``sluice dump-log`` on a 1 GiB segment and the 3 MB one of issue 17     |
"""
