"""The broker: one process that stores partitions as logs and serves them over ZeroMQ.

Its layers are Kafka 0.7's: sockets and loop, request handlers, LogManager, Log and segments.

| module         | holds                                                                  |
| -------------- | ---------------------------------------------------------------------- |
| server         | the sockets, the request loop, HANDLERS (api -> handler), run(config)   |
| handlers       | one handler per request type; the produce writes at the end of a turn  |
| committed_offsets | the leader's map of __consumer_offsets, replayed from its log; codec |
| long_poll      | the purgatory: parked fetches (Waiter), satisfied(), deadlines (pure)  |
| log_manager    | the hosted logs: placement, appends, retention and flush scheduling,   |
|                | the start-up scrub thread, errors outside requests                     |
| flusher        | the thread that fsyncs logs and wakes the loop                         |
| error_counts   | METADATA's error counters, each kind logged at most every few seconds  |
| log            | the Log, one partition: segments, append, read, roll, flush, retention |
| segment        | one segment file, and the pure segment lookups                         |
| recovery       | opening a log: torn tails cut, corrupt messages kept, gaps, set-asides |
| exposed_end    | the highest offset ever told to a client, kept so that none is reused  |
| scrub          | the CRC walk over a segment, and where an offset lies in it (pure)     |
| flush          | the flush policy: when a log is fsynced (pure)                         |
| retention      | which old segments go (pure)                                           |
| producer_state | which sequenced produce request of a partition comes next (pure)       |
| message        | the message and MessageSet format (shared with the clients)            |
| protocol       | the wire frames and error codes (shared with the clients)              |
| config         | every broker setting with its default                                  |

Imports run down the table: server -> handlers -> log_manager -> log -> recovery, segment, ...;
the broker uses coordinator/ to register, to read placements, and for the one error taxonomy.
"""
