"""SCRAM-SHA-256 and PLAIN on the server side (coordinator/scram.py), pure: RFC 7677's test
vector, kafka-python's own SCRAM client as a second judge, and each way an exchange fails."""
import base64
import hashlib

import pytest
from kafka.net.sasl.scram import ScramClient

from coordinator import scram
from coordinator.errors import InvalidArgument

SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


@pytest.fixture
def users():
    return {"user": scram.ScramCredential.from_password("pencil", SALT, 4096)}


def test_rfc_7677_vector(users):
    exchange = scram.ScramExchange(users.get, SERVER_NONCE)
    assert exchange.first(CLIENT_FIRST) == (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                                            b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")
    assert exchange.final(CLIENT_FINAL) == b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert exchange.done and exchange.user == "user"


def test_the_stored_credential_holds_no_password(users):
    stored = users["user"].to_json()
    assert b"pencil" not in stored
    assert scram.ScramCredential.from_json(stored) == users["user"]


def test_kafka_pythons_client_completes_the_exchange_and_checks_the_server():
    cred = scram.ScramCredential.from_password("s3cret")
    client = ScramClient("alice", "s3cret", "SCRAM-SHA-256")
    exchange = scram.ScramExchange({"alice": cred}.get, "servernonce")
    client.process_server_first_message(exchange.first(client.first_message()))
    client.process_server_final_message(exchange.final(client.final_message()))  # raises if wrong
    assert exchange.user == "alice"


@pytest.mark.parametrize("user,password", [("user", "pencil!"), ("nobody", "pencil")])
def test_a_wrong_password_or_unknown_user_is_refused_alike(users, user, password):
    client = ScramClient(user, password, "SCRAM-SHA-256")
    exchange = scram.ScramExchange(users.get, "n0nce")
    client.process_server_first_message(exchange.first(client.first_message()))
    with pytest.raises(scram.SaslRefused, match="unknown user or wrong password"):
        exchange.final(client.final_message())
    assert not exchange.done


def test_an_unknown_user_gets_the_same_salt_each_time(users):
    first = [scram.ScramExchange(users.get, "x").first(b"n,,n=ghost,r=abc") for _ in range(2)]
    assert first[0] == first[1] and b",s=" in first[0]


@pytest.mark.parametrize("message", [b"", b"p=tls-unique,,n=user,r=abc", b"n,,r=abc",
                                     b"n,,n=user", b"n,,n=us=er,r=abc", b"\xff\xfe",
                                     b"n,,n=user,r=abc,m=ext"])
def test_a_malformed_client_first_message_is_refused(users, message):
    with pytest.raises(scram.SaslRefused):
        scram.ScramExchange(users.get, "x").first(message)


def test_a_final_message_with_another_nonce_is_refused(users):
    exchange = scram.ScramExchange(users.get, SERVER_NONCE)
    exchange.first(CLIENT_FIRST)
    with pytest.raises(scram.SaslRefused, match="nonce"):
        exchange.final(CLIENT_FINAL.replace(b"k0,p=", b"k1,p="))


def test_plain_checks_the_password_against_the_stored_keys(users):
    assert scram.plain(b"\x00user\x00pencil", users.get) == "user"
    assert scram.plain(b"user\x00user\x00pencil", users.get) == "user"
    for bad in (b"\x00user\x00pencil!", b"\x00nobody\x00pencil", b"\x00user", b"x\x00user\x00pencil"):
        with pytest.raises(scram.SaslRefused):
            scram.plain(bad, users.get)


def test_too_few_iterations_and_empty_passwords_are_refused():
    with pytest.raises(InvalidArgument):
        scram.ScramCredential.from_password("pw", iterations=1000)
    with pytest.raises(InvalidArgument):
        scram.ScramCredential.from_password("")


def test_plain_remembers_a_success_only_for_the_credential_it_matched(users):
    remembered = {}
    assert scram.plain(b"\x00user\x00pencil", users.get, remembered) == "user"
    assert scram.plain(b"\x00user\x00pencil", users.get, remembered) == "user"   # remembered
    with pytest.raises(scram.SaslRefused):
        scram.plain(b"\x00user\x00wrong", users.get, remembered)
    changed = {"user": scram.ScramCredential.from_password("new password")}
    with pytest.raises(scram.SaslRefused):      # the old password after a change
        scram.plain(b"\x00user\x00pencil", changed.get, remembered)
    assert len(remembered) == 1


def test_old_librdkafkas_doubled_client_nonce_is_taken_but_no_other_nonce(users):
    """librdkafka before 2.6.1 answers r=<client nonce><client nonce><server nonce>."""
    cred = users["user"]
    for nonce, accepted in (("cnoncecnonceSRV", True), ("xcnonceSRV", False),
                            ("cnonceSRVx", False)):
        exchange = scram.ScramExchange(users.get, "SRV")
        server_first = exchange.first(b"n,,n=user,r=cnonce")
        without_proof = b"c=biws,r=" + nonce.encode()
        auth = b"n=user,r=cnonce," + server_first + b"," + without_proof
        salted = hashlib.pbkdf2_hmac("sha256", b"pencil", cred.salt, 4096)
        client_key = scram._hmac(salted, b"Client Key")
        signature = scram._hmac(cred.stored_key, auth)
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = without_proof + b",p=" + base64.b64encode(proof)
        if accepted:
            assert exchange.final(final).startswith(b"v=")
        else:
            with pytest.raises(scram.SaslRefused, match="nonce"):
                exchange.final(final)
