"""Watching a running cluster: what is sampled, how figures are estimated, where they are shown.

| module             | what                                                                |
| ------------------ | ------------------------------------------------------------------- |
| sampler            | ``Sampler``: one look at the whole cluster per second, 15 minutes   |
|                    | of history; the group figures                                       |
| processes          | per process figures (psutil)                                        |
| brokers            | per broker and partition figures (one METADATA request each)        |
| rates              | per-second rates of counters between samples (pure)                 |
| lag                | a group's lag per partition and the one stuck rule; what            |
|                    | ``sluice groups describe`` prints                                   |
| rebalance_tracker  | rebalances of a group as ZooKeeper shows them (pure)                |
| retention_left     | seconds until retention deletes a lagging group's unread data       |
| metrics            | Prometheus exposition of the latest snapshot (``/metrics``)         |
| web_dashboard      | the HTTP server: the page, its JSON feed, ``/metrics``              |
| web_static/        | the page, its script and style sheet (package data)                 |
| terminal_dashboard | ``sluice dashboard``, the same figures live in a terminal           |
"""
