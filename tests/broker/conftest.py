"""Fixtures of the broker's tests (the ZooKeeper ones are in tests/conftest.py)."""
import pytest


@pytest.fixture
def log_path(tmp_path):
    return tmp_path / "topic-0"
