"""Consumer-group worker processes, run in the supervisor's slots (``--workers M``).

| module | what                                                                          |
| ------ | ----------------------------------------------------------------------------- |
| worker | ``WorkerConfig`` and ``run``: a Consumer plus a handler, committing only what  |
|        | the handler finished; SIGTERM hands the partitions off                        |
| loader | the default handler: the paper's Hadoop loader in miniature, hourly files per |
|        | partition, fsynced before every commit                                        |
"""
