"""Helpers for the tests of one partition's Log on real files (test_log, test_recovery,
test_exposed_end, test_flush, test_retention)."""
import errno
import os

from broker import message
from broker.config import LogConfig
from broker.log import Log
from broker.segment import segment_name

KIB = 1024


def msg(i: int, size: int = 100) -> bytes:
    """One unkeyed message with a ``size``-byte value: 4 + 5 + size bytes on disk."""
    return message.encode(b"%06d" % i + b"." * (size - 6))


def make_log(path, **settings) -> Log:
    settings.setdefault("visible_after_flush", False)
    return Log(path, LogConfig(**settings))


def append_each(log: Log, messages: list[bytes]) -> list[int]:
    """Append one set per message; return each message's offset."""
    return [log.append(m, 1)[0] for m in messages]


def read_all(log: Log, max_bytes: int = 4096) -> list[message.Message]:
    out = []
    offset = log.start_offset
    while offset < log.visible_end:
        chunk = log.read(offset, max_bytes)
        assert chunk, f"empty read at {offset} below the visible end {log.visible_end}"
        out.extend(message.decode_set(chunk, "t", 0, offset))
        offset += len(chunk)
    return out


def files(path) -> list[str]:
    return sorted(p.name for p in path.glob("*.log"))


def crash(log: Log) -> None:
    """What a SIGKILL leaves behind: no final flush, no clean-shutdown marker (the page cache
    keeps every write, so the files are as the process last wrote them)."""
    log._close_fds()


def flip_byte(path, pos: int, mask: int = 0x01) -> None:
    data = bytearray(path.read_bytes())
    data[pos] ^= mask
    path.write_bytes(bytes(data))


def set_mtime(log_path, start: int, seconds: float) -> None:
    os.utime(log_path / segment_name(start), (seconds, seconds))


def partial_write(nbytes: int, err: int = errno.ENOSPC):
    """A stand-in for ``os.write`` that writes the first ``nbytes`` and then fails with ``err``:
    a disk that fills up in the middle of a write."""
    real = os.write

    def write(fd, data):
        real(fd, bytes(data[:nbytes]))
        raise OSError(err, os.strerror(err))
    return write
