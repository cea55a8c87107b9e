"""The repository stands alone: its code, tests and documents point at nothing outside it.

A reader of a clone has only the clone. Design notes kept beside the repository while it was
built (a shared folder, an interface or style sheet, the seed it started from) are not there, so
a docstring or README line citing them points nowhere; the paper (Kreps, Narkhede, Rao, NetDB
2011) or a file of the repository is cited instead.
"""
from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SKIP_DIRS = {".git", ".venv", "node_modules", ".sluice", "__pycache__", ".pytest_cache",
             ".hypothesis", "build", "dist"}
TEXT_SUFFIXES = {".py", ".md", ".txt", ".toml", ".cfg", ".ini", ".sh", ".js", ".html", ".css",
                 ".json", ".yml", ".yaml", ""}
# This file names what it looks for, so it skips itself.
OUTSIDE = re.compile("|".join([
    r"\.\./" + "shared", r"/work/" + "shared", "shared/" + "seed",
    "INTERFACE" + r"\.md", "PAPER" + r"\.md", "STYLE" + r"\.md",
    r"\bthe " + r"seed\b", r"\bseed" + "'s\\b",
]), re.IGNORECASE)


def repository_files():
    for path in REPO.rglob("*"):
        parts = set(path.relative_to(REPO).parts)
        if parts & SKIP_DIRS or any(p.endswith(".egg-info") for p in parts):
            continue
        if path.is_file() and path != Path(__file__).resolve() and (path.suffix in TEXT_SUFFIXES or path.name == "Makefile"):
            yield path


def test_no_file_points_outside_the_repository():
    found = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not found, "references outside the repository:\n" + "\n".join(found)


def test_the_check_sees_each_kind_of_reference():
    for line in ["see ../" "shared/seed/README", "INTERFACE" ".md's shape", "the " "seed's story",
                 "The " "seed's silent data loss"]:
        assert OUTSIDE.search(line), line
    assert not OUTSIDE.search("random.seed(7) seeds hypothesis; --seed 3")
