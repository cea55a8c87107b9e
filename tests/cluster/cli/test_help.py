"""Every option of every ``sluice`` command explains itself (help text, and its default where
it has one), and README.md states the same defaults as ``--help``: both walk the parser tree,
so a new option without help, or a README default that drifts, fails here."""
from __future__ import annotations

import argparse
import re

import pytest

from cluster.cli.parser import build_parser
from tests.helpers import ROOT


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """``(path, parser)`` for the parser and every sub-command under it, depth first."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, path + (name,))


def arguments(parser: argparse.ArgumentParser):
    return [a for a in parser._actions
            if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]


def has_default(action: argparse.Action) -> bool:
    """A default worth showing: not absent, and not a flag's off."""
    return action.default not in (None, False, argparse.SUPPRESS) and not (
        isinstance(action, argparse._StoreTrueAction))


TREE = list(commands(build_parser()))


def test_the_walk_finds_every_command():
    names = {" ".join(path) for path, _ in TREE}
    assert {"produce", "consume", "cluster up", "topics create", "perf produce",
            "perf consume", "dump-log", "drill", "acl add"} <= names


@pytest.mark.parametrize("path, parser", TREE, ids=[" ".join(p) or "sluice" for p, _ in TREE])
def test_every_option_has_help_and_shows_its_default(path, parser):
    missing, no_default = [], []
    for action in arguments(parser):
        name = "/".join(action.option_strings) or action.dest
        if not action.help or action.help == argparse.SUPPRESS:
            missing.append(name)
        elif has_default(action) and "%(default)" not in action.help:
            no_default.append(f"{name} (default {action.default!r})")
    assert not missing, f"sluice {' '.join(path)}: options without help: {missing}"
    assert not no_default, f"sluice {' '.join(path)}: help without %(default)s: {no_default}"
    parser.format_help()     # every %(...)s expands


def option_defaults() -> dict[str, set]:
    """Every option's default, by option string, over all commands (one option may have
    different defaults in different commands: ``--acks`` of produce and of perf produce)."""
    found: dict[str, set] = {}
    for _, parser in TREE:
        for action in arguments(parser):
            if has_default(action):
                for option in action.option_strings:
                    found.setdefault(option, set()).add(str(action.default))
    return found


# "`--idle-seconds` (default 30)", "(`--interval`, default 2 s)"
README_DEFAULT = re.compile(r"`(--[a-z-]+)[^`]*`[^`(\n]{0,40}?\(?(?:default:? |, )(\d[\d.]*)"
                            r"(?: ?(?:s|ms))?[),;]")
# README's other ways of saying a default: (pattern, option, how the match becomes the value)
README_PHRASES = [
    (r"default `http://([\d.]+):\d+/`, `--dashboard-port`", "--dashboard-host"),
    (r"default `http://[\d.]+:(\d+)/`, `--dashboard-port`", "--dashboard-port"),
    (r"`sluice produce` uses acks=(\d)", "--acks"),
    (r"default data dir `([^`]+)`", "--data-dir"),
]


def test_readme_states_the_parsers_defaults():
    readme = (ROOT / "README.md").read_text()
    defaults = option_defaults()
    stated = README_DEFAULT.findall(readme)
    assert len(stated) >= 2, f"the pattern no longer finds README's stated defaults: {stated}"
    for pattern, option in README_PHRASES:
        found = re.findall(pattern, readme)
        assert found, f"README no longer says {pattern!r}: update README_PHRASES"
        stated += [(option, value) for value in found]
    wrong = [(option, value, sorted(defaults[option])) for option, value in stated
             if option in defaults and not any(_same(value, d) for d in defaults[option])]
    assert not wrong, f"README states defaults --help does not: {wrong}"
    assert {option for option, _ in stated} <= set(defaults), stated


def _same(stated: str, default: str) -> bool:
    if _number(stated) and _number(default):
        return float(stated) == float(default)
    return stated == default


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_readme_in_flight_matches_the_producer():
    """The issue's example: README's requests in flight per broker are the Producer's."""
    from clients.config import ProducerConfig
    readme = (ROOT / "README.md").read_text()
    counts = {int(n) for n in re.findall(r"(\d+) (?:batches|requests)? ?in flight", readme)}
    counts |= {int(n) for n in re.findall(r"`max_in_flight` \((\d+)\)", readme)}
    assert counts == {ProducerConfig().max_in_flight}, counts
