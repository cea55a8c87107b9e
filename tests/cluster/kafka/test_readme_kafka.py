"""README's "Use it from Kafka clients", run as printed against a real cluster.

The examples are read from README.md (each fenced block after a ``<!-- kafka-example -->``
line, in order), so they cannot drift from what is tested; the block after a
``<!-- kafka-output -->`` line that follows an example is what it prints, and the run must print
exactly that. The first example's ``sluice cluster up --detach --kafka-port 9092`` is what the
test's own cluster stands for (cluster_factory with the default broker count and
``kafka_port=BASE``, BASE a free port with the next ones free too, since 9092 may be taken on a
test machine); the one change to a command is the README's bootstrap address
``127.0.0.1:9092`` to ``127.0.0.1:BASE``. Commands run in a directory whose ``.sluice`` is the
cluster's data dir, with ``sluice`` on PATH running this checkout, as in test_readme_tour.py.
"""
from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

from broker.kafka.apis import VERSIONS
from cluster.supervision.config import ClusterConfig
from tests.cluster.test_readme_tour import readers_folder
from tests.helpers import ROOT

MARK = "<!-- kafka-example -->"
OUTPUT = "<!-- kafka-output -->"
EXAMPLE = re.compile(re.escape(MARK) + r"\n```(\w+)\n(.*?)\n```"
                     r"(?:\n(?:(?!```).)*?" + re.escape(OUTPUT) + r"\n```text\n(.*?)\n```)?",
                     re.DOTALL)
README_BOOTSTRAP = "127.0.0.1:9092"
CLUSTER_UP = "sluice cluster up --detach --kafka-port 9092"


def section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Use it from Kafka clients")
    return text[start:text.index("\n## ", start + 1)]


def examples() -> list[tuple[str, str, str | None]]:
    """(language, text, what it prints or None) of every marked example, in order."""
    return [(lang, body, out or None) for lang, body, out in EXAMPLE.findall(section())]


def consecutive_free_ports(count: int) -> int:
    """A base port with ``count`` ports free from it (bound and released: another process may
    still take one before the brokers do, which fails the cluster's start loudly)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            base = first.getsockname()[1]
            if base + count > 65535:
                continue
            held = []
            try:
                for port in range(base + 1, base + count):
                    s = socket.socket()
                    held.append(s)
                    s.bind(("127.0.0.1", port))
                return base
            except OSError:
                continue
            finally:
                for s in held:
                    s.close()
    raise RuntimeError(f"no {count} consecutive free ports")


def readme_api_table() -> dict[int, tuple[int, int]]:
    """{api key: (lowest, highest version)} of the section's table of supported APIs."""
    rows = re.findall(r"^\| [A-Za-z]+ \((\d+)\) \| (\d+)-(\d+) \|", section(), re.MULTILINE)
    table = {int(key): (int(low), int(high)) for key, low, high in rows}
    assert len(table) == len(rows), "an api key twice in the table"
    return table


def test_the_readme_table_of_apis_is_what_api_versions_answers(kafka_broker):
    from kafka.admin import KafkaAdminClient
    proc = kafka_broker()
    admin = KafkaAdminClient(bootstrap_servers=proc.info["kafka_endpoint"])
    try:
        answered = {int(key): tuple(versions) for key, versions in admin.api_versions().items()}
    finally:
        admin.close()
    assert answered == VERSIONS
    assert readme_api_table() == answered


def test_the_kafka_examples_are_marked_in_the_readme():
    found = examples()
    assert [lang for lang, _, _ in found] == ["sh", "python", "python", "python", "sh"]
    assert "kcat" in found[0][1] and "from kafka import" in found[1][1]
    assert "from confluent_kafka import" in found[2][1]
    assert found[0][1].splitlines()[0] == CLUSTER_UP
    assert all(out is not None for _, _, out in found), "an example without its output"


def test_every_kafka_example_prints_what_the_readme_says(cluster_factory, tmp_path):
    brokers = ClusterConfig(tmp_path).brokers        # what `sluice cluster up` starts
    base = consecutive_free_ports(brokers)
    cluster = cluster_factory(kafka_port=base)
    here = tmp_path / "kafka"
    env = readers_folder(cluster, here)
    bootstrap = f"127.0.0.1:{base}"

    def run(argv: list[str]) -> str:
        done = subprocess.run(argv, cwd=here, env=env, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, (argv, done.stdout[-2000:], done.stderr[-2000:])
        return done.stdout

    status = json.loads(run(["sluice", "cluster", "status", "--json"]))
    assert status["kafka_bootstrap"] == ",".join(f"127.0.0.1:{base + i}" for i in range(brokers))
    for lang, body, expected in examples():
        body = body.replace(README_BOOTSTRAP, bootstrap)
        if lang == "sh":
            printed = ""
            for line in body.splitlines():
                if line.startswith(CLUSTER_UP):
                    continue
                printed += run(["bash", "-c", line])
        else:
            printed = run([sys.executable, "-c", body])
        assert printed.rstrip("\n") == expected, body
