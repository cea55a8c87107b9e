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
