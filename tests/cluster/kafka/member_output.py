"""What a group member process writes, ``partition offset value`` a line, read while it
grows. A test waits on it many times a second; parsing the whole file at every look cost a
core at 100,000 records, so each look parses only the whole lines appended since the last one
(a line still being written waits for its newline)."""
from __future__ import annotations

from pathlib import Path


class MemberOutput:
    def __init__(self, path: Path):
        self.path = Path(path)
        self._read = 0                       # bytes parsed so far: up to a newline
        self._rows: list[tuple[int, int, str]] = []

    def records(self) -> list[tuple[int, int, str]]:
        """Every ``(partition, offset, value)`` written so far, in the order written."""
        with open(self.path, "rb") as f:
            f.seek(self._read)
            data = f.read()
        whole = data.rfind(b"\n") + 1
        self._read += whole
        for line in data[:whole].decode().splitlines():
            parts = line.split()
            if len(parts) == 3:
                self._rows.append((int(parts[0]), int(parts[1]), parts[2]))
        return list(self._rows)
