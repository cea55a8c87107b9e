"""The coordinator: everything sluice keeps in ZooKeeper, over kazoo and nothing of ours above.

| module              | holds                                                                   |
| ------------------- | ----------------------------------------------------------------------- |
| paths               | the whole ZooKeeper layout, in one docstring; name checks               |
| zk                  | finding the ensemble (argument, $SLUICE_ZK, the local cluster), connecting |
| errors              | the one error taxonomy (SluiceError, InvalidArgument, the wire's codes) |
| settings            | the checks every typed config uses (unknown keys, numbers, choices)     |
| registry            | the broker registry: brokers register, clients discover (ClusterView)   |
| topics              | topic creation and the persistent placement of partitions on brokers    |
| assignor            | range and sticky assignment (pure)                                      |
| rebalance           | rebalance planning: Algorithm 1's steps, the cooperative plan (pure)    |
| rebalance_protocols | the eager and cooperative protocols as strategy objects                 |
| group               | a group member: watches, session states, the rebalance thread           |
| membership          | a member's node, dynamic or static (KIP-345), and fencing               |
| consumer_registry   | the consumer and ownership registries, read: members, owners, groups    |
| liveness            | the poll-interval timer (pure)                                          |
| offsets             | the OffsetStore: committed offsets and data-loss notes                  |
| offset_store_choice | which store a group's offsets use (pure choice), __consumer_offsets     |
| pids                | is a process on this host alive (stale ephemeral nodes)                 |
| partition_state     | a partition's leader, leader epoch and ISR; conditional writes          |
| election            | leader election for one partition, preferred-leader rebalance (pure)    |
| controller          | the controller: elected through /controller, runs elections on changes  |
"""
