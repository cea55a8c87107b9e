"""broker/kafka/sasl.py's pure parts: the session deadlines (KIP-368) and the gate."""
import doctest

from broker.kafka import sasl
from broker.kafka.sasl import DONE, SaslState, Sessions


def test_the_sasl_doctests():
    assert doctest.testmod(sasl).failed == 0


class Conn:
    def __init__(self):
        self.closed = False
        self.sasl = SaslState()
        self.sasl.step = DONE


def test_a_reauthentication_under_way_has_its_own_deadline_and_a_renewal_replaces_it():
    """The handshake of a re-authentication gives it ``seconds``; its end renews the session;
    the stale entries of both are skipped, and only the last deadline counts."""
    sessions, closed = Sessions(1000, stats={}), []
    conn = Conn()
    sessions.started(conn, now=0.0)                     # ends at 1.0
    sessions.started(conn, now=0.9, seconds=10.0)       # re-authenticating: until 10.9
    assert sessions.tick(1.0, closed.append) == 10.9 and closed == []
    sessions.started(conn, now=1.2)                     # renewed: ends at 2.2
    assert sessions.tick(10.9, closed.append) is None
    assert closed == [conn] and sessions.stats == {"kafka_sessions_expired": 1}


def test_a_closed_connection_is_not_closed_again():
    sessions, closed = Sessions(1000, stats={}), []
    conn = Conn()
    sessions.started(conn, now=0.0)
    conn.closed = True
    assert sessions.tick(5.0, closed.append) is None and closed == []
    assert sessions.stats == {}


def test_a_request_after_the_session_ended_closes_the_connection_unanswered():
    """The dispatcher's side of the deadline: a Metadata request that comes after the
    session's end (before the ticker closed it) is not served, and is counted once."""
    from kafka.protocol.metadata import MetadataRequest

    from broker.kafka import apis
    from broker.kafka.request import CloseAfter, KafkaContext
    ctx = KafkaContext(logs=None, handlers=None, replicas=None, config=None, zk=None,
                       broker_id=0)
    ctx.state["sasl_sessions"] = sessions = Sessions(1000, stats={})
    conn = Conn()
    sessions.started(conn, now=ctx.now() - 2.0)          # ended a second ago
    request = MetadataRequest(version=9, topics=None, allow_auto_topic_creation=False)
    request.with_header(correlation_id=7, client_id="late")
    req, result = apis.dispatch(bytes(request.encode(header=True)), conn, ctx)
    assert req is None and result == CloseAfter(None)
    assert sessions.stats == {"kafka_sessions_expired": 1}
