"""One error taxonomy: every exception class sluice defines derives from SluiceError."""
import importlib
import inspect
import pkgutil

import pytest

import broker
import clients
import cluster
import coordinator
from coordinator import errors


def our_modules():
    for package in (broker, clients, cluster, coordinator):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            yield importlib.import_module(info.name)


def test_every_exception_class_of_ours_has_the_one_root():
    """Private ones (a leading underscore) are control flow that never leaves its module."""
    strays = [f"{module.__name__}.{name}" for module in our_modules()
              for name, cls in vars(module).items()
              if inspect.isclass(cls) and issubclass(cls, BaseException) and not name.startswith("_")
              and cls.__module__ == module.__name__ and not issubclass(cls, errors.SluiceError)]
    assert strays == []


def test_each_wire_code_has_one_class_and_round_trips():
    for code in errors.ErrorCode:
        if code in (errors.ErrorCode.NONE, errors.ErrorCode.UNKNOWN_API):
            continue
        error = errors.error_for(code, "text", 7)
        assert error.code == code and type(error) is not errors.SluiceError
        assert str(error) == "text" and error.resume_offset == 7


@pytest.mark.parametrize("cls,retriable", [
    (errors.BrokerUnavailable, True), (errors.RequestTimedOut, True), (errors.NotLeader, True),
    (errors.OutOfOrderSequence, True), (errors.UnknownTopicOrPartition, True),
    (errors.NotEnoughReplicas, True), (errors.FencedLeaderEpoch, True),
    (errors.AuthenticationFailed, False), (errors.AuthorizationFailed, False),
    (errors.CorruptMessage, False), (errors.MessageTooLarge, False), (errors.OffsetGap, False),
    (errors.StorageError, False), (errors.InvalidArgument, False)])
def test_the_error_says_whether_to_try_again(cls, retriable):
    assert cls.retriable is retriable and cls("x").user_error


def test_an_invalid_argument_is_still_a_value_and_a_type_error():
    with pytest.raises(ValueError):
        raise errors.InvalidArgument("bad")
    with pytest.raises(TypeError):
        raise errors.InvalidArgument("bad")
