"""The local cluster and everything that runs on top of the library: it may use every package.

| package      | what                                                                        |
| ------------ | --------------------------------------------------------------------------- |
| supervision/ | ``ClusterConfig``, the supervisor and its slots, up / down / status, the     |
|              | cluster's files, the embedded ZooKeeper servers                             |
| workers/     | consumer-group worker processes and their default handler (the loader)     |
| observe/     | the sampler, lag and the stuck rule, rebalance tracking, the retention      |
|              | countdown, Prometheus metrics, the web and terminal dashboards              |
| drills/      | fault drills with a loss ledger, one module per family of faults            |
| tools/       | the paper's benchmark, ``sluice perf``, the dashboards' cost                |
| cli/         | ``sluice``: the parser, the commands, how a command ends                    |
| errors       | ``ClusterError`` and ``ClusterSettingError``                                |
| targets      | a callable named ``module:function`` (broker targets, worker handlers)      |
"""
