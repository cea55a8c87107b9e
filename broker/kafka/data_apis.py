"""The data APIs of the Kafka listener: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
InitProducerId. Each is a handler of broker/kafka/request.py's signature on the broker's own
pieces: the LogManager's logs, the ReplicaManager's leaders and high watermarks, the acks=all
purgatory of broker/delayed_produce.py. Records are converted by broker/kafka/records.py.

Versions (``DATA_VERSIONS``) are the ones handled here, all decoded and encoded by
kafka-python's classes: the first versions with topic ids (Metadata 10+ carries them, Fetch
13+, Produce 13+ name topics only by id) are left out, sluice's topics having names only.
"""
from __future__ import annotations

import logging

from kafka.protocol.metadata import ApiVersionsResponse, MetadataResponse

from broker.kafka import errors
from broker.kafka.request import KafkaContext, KafkaRequest
from coordinator import topics
from coordinator.errors import SluiceError

logger = logging.getLogger(__name__)

API_VERSIONS_KEY = 18
METADATA_KEY = 3

CLUSTER_ID = "sluice"

_Broker = MetadataResponse.MetadataResponseBroker
_Topic = MetadataResponse.MetadataResponseTopic
_Partition = MetadataResponse.MetadataResponseTopic.MetadataResponsePartition


def setup(ctx: KafkaContext) -> None:
    """Nothing yet: the produce and fetch purgatories come with those APIs."""


# --- ApiVersions ---------------------------------------------------------------------------

def api_versions_response(version: int, table: dict, error_code: int = errors.NONE):
    return ApiVersionsResponse(version=version, error_code=error_code, throttle_time_ms=0,
                               api_keys=[ApiVersionsResponse.ApiVersion(
                                   api_key=key, min_version=low, max_version=high)
                                   for key, (low, high) in sorted(table.items())])


def api_versions(req: KafkaRequest, ctx: KafkaContext):
    return api_versions_response(req.api_version, ctx.versions)


# --- Metadata ------------------------------------------------------------------------------

def metadata(req: KafkaRequest, ctx: KafkaContext):
    """Every live broker with a Kafka endpoint, and the asked-for topics (all when none are
    named, or v1+ ``topics`` null) with each partition's leader, replicas and ISR from
    ZooKeeper's partition states. Topics are never created here (sluice creates them with
    ``sluice topics create``): an unknown one is UNKNOWN_TOPIC_OR_PARTITION."""
    view = ctx.logs.view
    live = view.brokers()
    brokers = []
    kafka_of = {}
    for broker_id, info in sorted(live.items()):
        host, _, port = info.kafka_endpoint.rpartition(":")
        if host:
            kafka_of[broker_id] = (host, int(port))
            brokers.append(_Broker(node_id=broker_id, host=host, port=int(port), rack=None))
    asked = req.body.topics
    if asked is None or (req.api_version == 0 and not asked):
        names = topics.names(ctx.zk)
    else:
        names = [topic.name for topic in asked]
    return MetadataResponse(version=req.api_version, throttle_time_ms=0, brokers=brokers,
                            cluster_id=CLUSTER_ID, controller_id=ctx.broker_id,
                            topics=[_topic_metadata(view, name, kafka_of) for name in names])


def _topic_metadata(view, name: str, kafka_of: dict):
    try:
        placement = view.placement(name)
    except topics.UnknownTopic:
        return _Topic(error_code=errors.UNKNOWN_TOPIC_OR_PARTITION, name=name,
                      is_internal=False, partitions=[])
    except SluiceError as exc:
        logger.warning("kafka metadata for %s: %s", name, exc)
        return _Topic(error_code=errors.kafka_code(exc), name=name, is_internal=False,
                      partitions=[])
    partitions = []
    for p in range(placement.partitions):
        state = view.state(name, p)
        replicas = list(placement.replicas[p])
        leader = state.leader if state.has_leader and state.leader in kafka_of else -1
        partitions.append(_Partition(
            error_code=errors.NONE if leader >= 0 else errors.LEADER_NOT_AVAILABLE,
            partition_index=p, leader_id=leader, leader_epoch=state.leader_epoch,
            replica_nodes=replicas, isr_nodes=list(state.isr),
            offline_replicas=[b for b in replicas if b not in kafka_of]))
    return _Topic(error_code=errors.NONE, name=name, is_internal=False, partitions=partitions)


DATA_HANDLERS = {
    API_VERSIONS_KEY: api_versions,
    METADATA_KEY: metadata,
}

DATA_VERSIONS = {
    API_VERSIONS_KEY: (0, 4),
    METADATA_KEY: (0, 9),
}
