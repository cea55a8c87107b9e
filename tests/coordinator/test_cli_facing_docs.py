"""The worked examples of the decisions the command line leans on: name checks that say why
(paths.check_name), the reach summary of an unreachable ensemble (zk.unreachable_summary), the
message limit a producer learns from the registrations (registry.message_limit)."""
import doctest

import pytest

from coordinator import paths, registry, zk


@pytest.mark.parametrize("module", [paths, registry, zk])
def test_worked_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
