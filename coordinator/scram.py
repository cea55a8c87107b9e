"""SASL's SCRAM-SHA-256 (RFC 5802, RFC 7677) and PLAIN (RFC 4616) on the server side. Pure: no
I/O, no clock; the nonce is an argument.

What is stored per user is a ``ScramCredential``: the salt, the iteration count, and two keys
derived from the salted password, never the password itself::

    SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)
    StoredKey      = SHA-256(HMAC(SaltedPassword, "Client Key"))
    ServerKey      = HMAC(SaltedPassword, "Server Key")

A SCRAM exchange is two round trips, and the server computes HMACs only (no PBKDF2, so a
client cannot make the broker's loop spend milliseconds per attempt)::

    client-first  n,,n=user,r=<client nonce>
    server-first  r=<client nonce><server nonce>,s=<salt, base64>,i=<iterations>
    client-final  c=biws,r=<both nonces>,p=<ClientProof, base64>
    server-final  v=<ServerSignature, base64>

with AuthMessage = client-first-bare "," server-first "," client-final-without-proof,
ClientSignature = HMAC(StoredKey, AuthMessage), ClientProof = ClientKey XOR ClientSignature;
the server recovers ClientKey = ClientProof XOR ClientSignature and checks SHA-256(ClientKey)
== StoredKey, then proves itself with ServerSignature = HMAC(ServerKey, AuthMessage).

RFC 7677's example (user "user", password "pencil")::

    >>> salt = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
    >>> cred = ScramCredential.from_password("pencil", salt, 4096)
    >>> exchange = ScramExchange(lambda name: cred if name == "user" else None,
    ...                          "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    >>> exchange.first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO")
    b'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'
    >>> exchange.final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    ...                b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    b'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4='
    >>> exchange.user
    'user'

A wrong proof, an unknown user or a malformed message raises ``SaslRefused``; an unknown user
is told a salt all the same (derived from its name and a per-process secret, the same for the
same name), so the exchange does not say which names exist.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from typing import Callable

from coordinator.errors import AuthenticationFailed, InvalidArgument

SCRAM_SHA_256 = "SCRAM-SHA-256"
PLAIN = "PLAIN"
MECHANISMS = (SCRAM_SHA_256, PLAIN)
ITERATIONS = 4096          # RFC 7677's minimum, Kafka's default
MIN_ITERATIONS = 4096
SALT_BYTES = 16
_HASH = hashlib.sha256
_FAKE_SALT_KEY = secrets.token_bytes(32)   # salts told for unknown users; PLAIN's memory
_REMEMBERED = 4096                         # PLAIN logins remembered (emptied when full)


class SaslRefused(AuthenticationFailed):
    """The client failed to authenticate: the line for the broker's log and the client's
    error message (never a password or a key). Not retriable, as any refused credential."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, _HASH).digest()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What the cluster keeps of one user's password (RFC 5802 section 3)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __post_init__(self):
        if not isinstance(self.iterations, int) or self.iterations < MIN_ITERATIONS:
            raise InvalidArgument(f"SCRAM iterations must be at least {MIN_ITERATIONS}")
        if len(self.stored_key) != _HASH().digest_size or \
                len(self.server_key) != _HASH().digest_size or not self.salt:
            raise InvalidArgument("a SCRAM-SHA-256 credential has a salt and two 32-byte keys")

    @classmethod
    def from_password(cls, password: str, salt: bytes | None = None,
                      iterations: int = ITERATIONS) -> "ScramCredential":
        """Derive the stored keys (a fresh random salt unless one is given)."""
        salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
        salted = hashlib.pbkdf2_hmac("sha256", _normalize(password), salt, iterations)
        return cls(salt, iterations, _HASH(_hmac(salted, b"Client Key")).digest(),
                   _hmac(salted, b"Server Key"))

    def matches(self, password: str) -> bool:
        """Whether ``password`` is this credential's (for PLAIN: one PBKDF2, constant-time
        comparison)."""
        other = ScramCredential.from_password(password, self.salt, self.iterations)
        return hmac.compare_digest(other.stored_key, self.stored_key)

    def to_json(self) -> bytes:
        return json.dumps({"mechanism": SCRAM_SHA_256, "salt": _b64(self.salt),
                           "iterations": self.iterations, "stored_key": _b64(self.stored_key),
                           "server_key": _b64(self.server_key)}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> "ScramCredential":
        try:
            value = json.loads(data)
            if value.get("mechanism") != SCRAM_SHA_256:
                raise ValueError(f"mechanism {value.get('mechanism')!r}")
            return cls(base64.b64decode(value["salt"]), value["iterations"],
                       base64.b64decode(value["stored_key"]),
                       base64.b64decode(value["server_key"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidArgument(f"not a stored SCRAM-SHA-256 credential: {exc}") from None


def _normalize(password: str) -> bytes:
    """The password's bytes. SASLprep (RFC 4013) is left out, as kafka-python and librdkafka
    leave it out: both hash the UTF-8 bytes as given."""
    if not isinstance(password, str) or not password:
        raise InvalidArgument("a password must not be empty")
    return password.encode("utf-8")


def _attributes(message: bytes, what: str) -> list[tuple[str, str]]:
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslRefused(f"the SCRAM {what} is not UTF-8") from None
    pairs = []
    for part in text.split(","):
        name, eq, value = part.partition("=")
        if len(name) != 1 or not eq:
            raise SaslRefused(f"the SCRAM {what} is malformed")
        pairs.append((name, value))
    return pairs


def _unescape(name: str) -> str:
    """RFC 5802's saslname: '=2C' is ',' and '=3D' is '='; any other '=' is malformed."""
    out = name.replace("=2C", ",").replace("=3D", "=")
    if "=" in name.replace("=2C", "").replace("=3D", ""):
        raise SaslRefused("the SCRAM user name is malformed")
    return out


class ScramExchange:
    """One SCRAM-SHA-256 exchange, server side: ``first`` answers the client-first message,
    ``final`` checks the client's proof and answers the server-final message. ``lookup(user)``
    is the user's ScramCredential or None."""

    def __init__(self, lookup: Callable[[str], ScramCredential | None], server_nonce: str):
        self.lookup = lookup
        self.server_nonce = server_nonce
        self.user: str | None = None
        self._credential: ScramCredential | None = None
        self._nonce = ""
        self._old_librdkafka = ""
        self._auth_prefix = b""
        self.done = False

    def first(self, message: bytes) -> bytes:
        gs2, sep, rest = message.partition(b",")
        authzid, sep2, bare = rest.partition(b",")
        if not sep or not sep2 or gs2 not in (b"n", b"y"):
            raise SaslRefused("the SCRAM client-first message is malformed (or asks for "
                              "channel binding, which is not served)")
        if authzid and not authzid.startswith(b"a="):
            raise SaslRefused("the SCRAM client-first message is malformed")
        attrs = _attributes(bare, "client-first message")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[1][1]:
            raise SaslRefused("the SCRAM client-first message lacks n= and r=")
        if any(name == "m" for name, _ in attrs):
            raise SaslRefused("SCRAM extensions (m=) are not served")
        self.user = _unescape(attrs[0][1])
        if authzid and authzid[2:].decode("utf-8", "replace") != self.user:
            raise SaslRefused("a SCRAM authorization id other than the user is not served")
        self._credential = self.lookup(self.user)
        salt, iterations = ((self._credential.salt, self._credential.iterations)
                            if self._credential is not None else
                            (_hmac(_FAKE_SALT_KEY, self.user.encode())[:SALT_BYTES], ITERATIONS))
        self._nonce = attrs[1][1] + self.server_nonce
        # librdkafka before 2.6.1 (Debian's kcat: 2.0.2) sends the client nonce once more in
        # front of the whole nonce (librdkafka#4895); Kafka 3.8.1 to 3.9 accept that too. It
        # still carries this exchange's server nonce, and the proof covers what was sent.
        self._old_librdkafka = attrs[1][1] + self._nonce
        server_first = f"r={self._nonce},s={_b64(salt)},i={iterations}".encode()
        self._auth_prefix = bare + b"," + server_first
        return server_first

    def final(self, message: bytes) -> bytes:
        without_proof, sep, proof_part = message.rpartition(b",p=")
        if not sep or not self._auth_prefix:
            raise SaslRefused("the SCRAM client-final message is malformed")
        attrs = dict(_attributes(without_proof, "client-final message"))
        if attrs.get("c") != "biws" or attrs.get("r") not in (self._nonce, self._old_librdkafka):
            raise SaslRefused("the SCRAM client-final message has a wrong channel binding "
                              "or nonce")
        try:
            proof = base64.b64decode(proof_part, validate=True)
        except ValueError:
            raise SaslRefused("the SCRAM client proof is not base64") from None
        credential = self._credential
        auth_message = self._auth_prefix + b"," + without_proof
        if credential is None or len(proof) != len(credential.stored_key):
            raise SaslRefused(f"authentication of user {self.user!r} with {SCRAM_SHA_256} "
                              f"failed: unknown user or wrong password")
        signature = _hmac(credential.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(_HASH(client_key).digest(), credential.stored_key):
            raise SaslRefused(f"authentication of user {self.user!r} with {SCRAM_SHA_256} "
                              f"failed: unknown user or wrong password")
        self.done = True
        return b"v=" + _b64(_hmac(credential.server_key, auth_message)).encode()


def plain(message: bytes, lookup: Callable[[str], ScramCredential | None],
          remembered: dict | None = None) -> str:
    """Check a PLAIN message ``authzid NUL user NUL password`` against the stored credential;
    the user's name, or SaslRefused.

    Each check costs one PBKDF2 of the credential's iterations (milliseconds of the caller's
    thread), so a ``remembered`` dict, when given, keeps the logins that succeeded: keyed by
    an HMAC of user and password under a key of this process, holding the credential they
    matched, so a reconnecting client costs one HMAC and a changed password is checked
    again. Failures are not remembered.

    >>> cred = ScramCredential.from_password("pencil", b"salt", 4096)
    >>> seen = {}
    >>> plain(b"\\x00user\\x00pencil", lambda name: cred if name == "user" else None, seen)
    'user'
    >>> len(seen)
    1
    """
    parts = message.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslRefused("the PLAIN message is malformed")
    try:
        authzid, user, password = (part.decode("utf-8") for part in parts)
    except UnicodeDecodeError:
        raise SaslRefused("the PLAIN message is not UTF-8") from None
    if authzid and authzid != user:
        raise SaslRefused("a PLAIN authorization id other than the user is not served")
    credential = lookup(user)
    key = _hmac(_FAKE_SALT_KEY, parts[1] + b"\x00" + parts[2])
    if credential is not None and remembered is not None and remembered.get(key) is credential:
        return user
    if credential is None or not credential.matches(password):
        raise SaslRefused(f"authentication of user {user!r} with {PLAIN} failed: unknown "
                          f"user or wrong password")
    if remembered is not None:
        if len(remembered) >= _REMEMBERED:
            remembered.clear()
        remembered[key] = credential
    return user
