"""The Kafka listener's certificates for a secured local cluster (issue 14 item 4).

``cluster up --secure`` makes, once, in ``<data-dir>/security/kafka/`` (0700) a cluster CA and
one broker certificate signed by it, valid for the brokers' hosts (``localhost``, 127.0.0.1 and
any advertised host given), then keeps them across restarts:

| file           | what                                                          |
| -------------- | ------------------------------------------------------------- |
| ca.pem         | the CA certificate: what Kafka clients are told to trust      |
| ca-key.pem     | the CA's private key (only to sign a new broker certificate)  |
| broker.pem     | the brokers' certificate                                      |
| broker-key.pem | its private key                                               |

every file 0600, as all of ``security/`` (a client of another user gets a copy of ca.pem).
Keys are EC P-256. The work is the ``openssl`` command's (OpenSSL 1.1.1 or later), run with
umask 077, so a key file is never readable by others, not even for a moment.
"""
from __future__ import annotations

import ipaddress
import os
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from broker.config import KafkaTlsConfig
from cluster.errors import ClusterError
from coordinator import credentials

logger = logging.getLogger(__name__)

KAFKA_DIR = "kafka"
CA_DAYS = 3650
BROKER_DAYS = 825
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise ClusterError("--secure makes the Kafka listener's certificates with the openssl "
                           "command, which is not installed (or give your own: --broker-settings "
                           "'{\"kafka_tls\": {...}}')")
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                          umask=0o077)
    if done.returncode != 0:
        raise ClusterError(f"openssl {args[0]} failed: {done.stderr.strip().splitlines()[-1:]}")


def _alt_names(hosts) -> str:
    names = []
    for host in dict.fromkeys(["localhost", "127.0.0.1", *hosts]):
        try:
            names.append(f"IP:{ipaddress.ip_address(host)}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def ensure(data_dir: str | Path, hosts=()) -> KafkaTlsConfig:
    """The CA and broker certificate of the cluster in ``data_dir`` (made when missing)."""
    root = credentials.security_dir(data_dir) / KAFKA_DIR
    for directory in (root.parent, root):
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        directory.chmod(0o700)
    ca, ca_key, cert, key = (root / n for n in ("ca.pem", "ca-key.pem", "broker.pem",
                                                 "broker-key.pem"))
    if not (ca.exists() and ca_key.exists()):
        _openssl("req", "-x509", *_EC, "-keyout", ca_key.name, "-out", ca.name, "-days",
                 str(CA_DAYS), "-subj", "/CN=sluice cluster CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=root)
        cert.unlink(missing_ok=True)
    if not (cert.exists() and key.exists()):
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            ext = Path(tmp) / "ext.cnf"
            ext.write_text(f"subjectAltName={_alt_names(hosts)}\nbasicConstraints=CA:FALSE\n"
                           "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
            csr = Path(tmp) / "broker.csr"
            _openssl("req", *_EC, "-keyout", key.name, "-out", str(csr), "-subj",
                     "/CN=sluice broker", cwd=root)
            _openssl("x509", "-req", "-in", str(csr), "-CA", ca.name, "-CAkey", ca_key.name,
                     "-set_serial", str(int.from_bytes(os.urandom(8), "big")),
                     "-days", str(BROKER_DAYS), "-extfile", str(ext), "-out", cert.name,
                     cwd=root)
        logger.info("made the Kafka listener's certificate in %s (trust %s)", root, ca)
    return KafkaTlsConfig(certificate=str(cert.resolve()), private_key=str(key.resolve()),
                          ca_certificate=str(ca.resolve()))
