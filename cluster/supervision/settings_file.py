"""The cluster's settings file (``sluice cluster up --config FILE``) and ``--set key=value``.

One file for the whole cluster, in the format of Kafka's ``server.properties``: one
``key=value`` a line, ``#`` or ``!`` starting a comment line, blank lines ignored, spaces
around the key and the value dropped. A key is a typed config's field behind its prefix:

| prefix    | config                              | example                             |
| --------- | ----------------------------------- | ----------------------------------- |
| broker.   | BrokerConfig, every broker          | broker.session_timeout_ms=10000     |
| log.      | LogConfig, every broker's logs      | log.segment_bytes=67108864          |
| worker.   | WorkerConfig, every group worker    | worker.on_error=skip                |
| consumer. | ConsumerConfig, the workers' member | consumer.max_poll_records=100       |

A value is read as its field's type (a whole number, a number, ``true``/``false``, text;
``null`` or nothing for a setting that may be unset) and checked by that config at once, so a
refused key or value names the file's line: ``cluster.properties:3: unknown setting
'log.segment_size' ...``. ``--set`` lines are named ``--set`` and come after the file's, so
they win; a key given twice keeps its last value. What the supervisor sets per process
(``broker_id``, ``data_dir``, ``zookeeper``, ``worker_id``) and ``broker.security`` (from
``--secure``) are refused.

>>> text = "log.segment_bytes = 4096\\n# a comment\\nconsumer.auto_commit_ms=250\\n"
>>> found = settings(parse(text, "c.properties"))
>>> found["broker"], found["worker"]
({'log': {'segment_bytes': 4096}}, {'consumer': {'auto_commit_ms': 250.0}})
>>> settings(parse("log.segment_size=1", "c.properties"))  # doctest: +ELLIPSIS
Traceback (most recent call last):
  ...
cluster.errors.ClusterSettingError: c.properties:1: unknown setting 'log.segment_size': ...
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable

from broker.config import BrokerConfig, LogConfig
from clients.config import ConsumerConfig
from cluster.errors import ClusterSettingError
from cluster.workers.worker import WorkerConfig

NULLS = ("", "null", "none")
_PLACEHOLDERS = {BrokerConfig: {"broker_id": 0, "data_dir": "d", "zookeeper": "z"},
                 WorkerConfig: {"worker_id": 0, "zookeeper": "z", "topic": "t", "group": "g",
                                "data_dir": "d"},
                 LogConfig: {}, ConsumerConfig: {}}
_NOT_HERE = {"broker_id", "data_dir", "zookeeper", "log", "security", "worker_id", "consumer"}
PREFIXES = {"broker.": BrokerConfig, "log.": LogConfig, "worker.": WorkerConfig,
            "consumer.": ConsumerConfig}


@dataclass(frozen=True)
class Entry:
    """One ``key=value`` and where it was written (``source:line``, or ``--set``)."""

    where: str
    key: str
    value: str


def read(path: str | Path) -> list[Entry]:
    """The file's entries (an unreadable file is an OSError: the CLI names it)."""
    return parse(Path(path).read_text(), str(path))


def parse(text: str, source: str) -> list[Entry]:
    """``key=value`` lines of ``text`` (comments and blank lines skipped). Pure."""
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped[0] in "#!":
            continue
        entries.append(_entry(f"{source}:{number}", stripped))
    return entries


def parse_sets(assignments: Iterable[str]) -> list[Entry]:
    """``--set key=value`` one-offs."""
    return [_entry("--set", assignment.strip()) for assignment in assignments]


def settings(entries: Iterable[Entry]) -> dict:
    """``{"broker": BrokerConfig settings with "log", "worker": WorkerConfig settings with
    "consumer"}``, each value typed and checked (a refused one names its line)."""
    broker: dict = {}
    worker: dict = {}
    for entry in entries:
        prefix = next((p for p in PREFIXES if entry.key.startswith(p)), None)
        if prefix is None:
            raise ClusterSettingError(f"{entry.where}: unknown setting {entry.key!r}: a key "
                                      f"starts with {', '.join(PREFIXES)}")
        cls, name = PREFIXES[prefix], entry.key[len(prefix):]
        value = _checked(entry, cls, prefix, name)
        if prefix == "log.":
            broker.setdefault("log", {})[name] = value
        elif prefix == "consumer.":
            worker.setdefault("consumer", {})[name] = value
        else:
            (broker if prefix == "broker." else worker)[name] = value
    return {"broker": broker, "worker": worker}


def _entry(where: str, text: str) -> Entry:
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise ClusterSettingError(f"{where}: expected key=value, got {text!r}")
    return Entry(where, key.strip(), value.strip())


def _checked(entry: Entry, cls: type, prefix: str, name: str):
    """The entry's value, typed as the field ``name`` of ``cls`` and checked by ``cls``."""
    known = {f.name: f for f in fields(cls) if f.name not in _NOT_HERE}
    if name not in known:
        hint = {"log": "log.", "consumer": "consumer."}.get(name)
        reason = (f"use {hint}<setting>" if hint else
                  "the supervisor sets it" if name in _NOT_HERE - {"security"} else
                  "cluster up --secure sets it" if name == "security" else
                  f"{prefix} takes {cls.__name__}'s fields: {', '.join(sorted(known))}")
        raise ClusterSettingError(f"{entry.where}: unknown setting {entry.key!r}: {reason}")
    try:
        value = typed(str(known[name].type), entry.value)
        cls(**{**_PLACEHOLDERS[cls], name: value})
    except (TypeError, ValueError) as exc:
        raise ClusterSettingError(f"{entry.where}: {entry.key}: {exc}") from None
    return value


def typed(type_text: str, text: str):
    """``text`` as a value of the annotation ``type_text`` (its first type that reads it). Pure.

    >>> typed("int", "4096"), typed("int | None", "null"), typed("float | None", "250")
    (4096, None, 250.0)
    >>> typed("bool", "true"), typed("str", "skip"), typed("int | str", "all")
    (True, 'skip', 'all')
    >>> typed("int", "lots")
    Traceback (most recent call last):
      ...
    ValueError: expected int, not 'lots'
    """
    options = [option.strip() for option in type_text.split("|")]
    if "None" in options and text.lower() in NULLS:
        return None
    for option in options:
        if option == "bool" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if option == "int":
            try:
                return int(text)
            except ValueError:
                continue
        if option == "float":
            try:
                return float(text)
            except ValueError:
                continue
        if option == "str":
            return text
    wanted = " or ".join(o if o != "None" else "null" for o in options)
    raise ValueError(f"expected {wanted}, not {text!r}")
