"""README's tour, run as printed against a real cluster: every step shows data.

The commands are read from README.md (each fenced block after a ``<!-- tour -->`` line), so
the tour cannot drift from what is tested. They run in a directory of their own whose
``.sluice`` is the test cluster's data dir (the default data dir every command looks in), with
``sluice`` on PATH running this checkout; nothing in a command is changed. The activation line
(``. .venv/bin/activate``) is what the PATH stands for, and is skipped.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

MARK = "<!-- tour -->"
BLOCK = re.compile(re.escape(MARK) + r"\n```(\w+)\n(.*?)\n```", re.DOTALL)


def tour_blocks() -> list[tuple[str, str]]:
    """(language, text) of every marked block of README.md, in order."""
    return BLOCK.findall((ROOT / "README.md").read_text())


def sluice_on_path(bin_dir: Path) -> None:
    script = bin_dir / "sluice"
    script.write_text(f"#!/bin/sh\nexec {sys.executable} -m cluster.cli \"$@\"\n")
    script.chmod(0o755)


def readers_folder(cluster, here: Path) -> dict:
    """A folder as a reader of the README has it after `make cluster-up` (the cluster's data
    dir as ``.sluice``, ``sluice`` on the PATH): its environment for the README's commands."""
    (here / "bin").mkdir(parents=True)
    (here / ".sluice").symlink_to(cluster.data_dir)
    sluice_on_path(here / "bin")
    env = {**os.environ, "PATH": f"{here / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(ROOT)}
    env.pop("SLUICE_ZK", None)
    return env


def test_the_tour_is_marked_in_the_readme():
    languages = [language for language, _ in tour_blocks()]
    assert languages == ["sh", "python"]


def test_every_step_of_the_tour_shows_data(cluster_factory, tmp_path):
    cluster = cluster_factory(brokers=3)
    here = tmp_path / "tour"
    env = readers_folder(cluster, here)
    (shell, commands), (_, python) = tour_blocks()
    outputs = {}
    for line in commands.splitlines():
        if line.startswith(". "):
            continue
        done = subprocess.run(["bash", "-c", line], cwd=here, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
        assert done.stdout.strip() or done.stderr.strip(), f"{line!r} printed nothing"
        outputs[line.split("#")[0].strip()] = done

    def output(start: str) -> str:
        (found,) = [done.stdout for line, done in outputs.items() if line.startswith(start)]
        return found

    first = [json.loads(row) for row in output("sluice consume clicks --partition 0").splitlines()]
    assert len(first) == 3 and {m["partition"] for m in first} == {0}
    assert all(re.fullmatch(r"user-\d+", m["key"]) for m in first)
    assert len(output("sluice consume clicks --group readers").splitlines()) == 10
    described = output("sluice groups describe readers")
    assert "readers" in described and "STUCK" not in described
    rows = output("sluice dump-log .sluice/broker-*/clicks/0/00000000000000000000.log "
                  "--max-messages").splitlines()
    assert sum(1 for row in rows if " ok " in row) == 5
    summary = output("sluice dump-log .sluice/broker-*/clicks/0/00000000000000000000.log "
                     "--summary")
    assert re.search(r": [1-9]\d* message\(s\)", summary) and "0 CRC failure(s)" in summary
    assert json.loads(output("sluice cluster status --json"))["processes"]

    done = subprocess.run([sys.executable, "-c", python], cwd=here, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = done.stdout.splitlines()
    assert len(printed) > 1 and printed[-1].endswith("b'user-42' b'page=/home'")
