"""The processes of the cluster as psutil sees them: one ``oneshot`` look each per sample.

| figure                         | from                                                    |
| ------------------------------ | ------------------------------------------------------- |
| cpu_percent, cpu_seconds       | user + system CPU time, its rate (100 = one core)       |
| rss_bytes, threads, open_files | memory info, thread count, open file descriptors        |
| read/write bytes (and per s)   | I/O counters, where the kernel lets us read them        |
| ctx_switches (and per s)       | voluntary + involuntary context switches                |

A process that is gone (or a zombie) is a row with ``alive`` false and no figures; the counters
a rate needs are kept per (role, id) between samples, dropped when the pid changes.
"""
from __future__ import annotations

from dataclasses import dataclass

import psutil

from cluster.observe.rates import rate, rounded


@dataclass(frozen=True)
class ProcessRef:
    """One process to watch: its role (zookeeper|broker|worker|supervisor), id and current pid."""

    role: str
    id: str
    pid: int | None
    restarts: int = 0

    @property
    def name(self) -> str:
        return f"{self.role} {self.id}"


class ProcessStats:
    """psutil figures of a changing set of processes; keeps what rates need between ticks."""

    def __init__(self):
        self._known: dict[tuple[str, str], tuple[psutil.Process, dict]] = {}

    def sample(self, refs: list[ProcessRef], now: float) -> list[dict]:
        rows, seen = [], set()
        for ref in refs:
            key = (ref.role, ref.id)
            seen.add(key)
            rows.append(self._one(key, ref, now))
        for key in set(self._known) - seen:
            del self._known[key]
        return rows

    def _one(self, key, ref: ProcessRef, now: float) -> dict:
        row = {"role": ref.role, "id": ref.id, "pid": ref.pid, "alive": False,
               "restarts": ref.restarts}
        if not ref.pid:
            self._known.pop(key, None)
            return row
        known = self._known.get(key)
        try:
            if known is None or known[0].pid != ref.pid:
                known = (psutil.Process(ref.pid), {})
                self._known[key] = known
            proc, before = known
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    self._known.pop(key, None)
                    return row
                cpu = proc.cpu_times()
                memory = proc.memory_info()
                threads = proc.num_threads()
                fds = proc.num_fds()
                ctx = proc.num_ctx_switches()
                try:
                    io = proc.io_counters()
                except (psutil.AccessDenied, AttributeError):
                    io = None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._known.pop(key, None)
            return row
        now_counters = {"time": now, "cpu": cpu.user + cpu.system,
                        "read": io.read_bytes if io else None,
                        "write": io.write_bytes if io else None,
                        "ctx": ctx.voluntary + ctx.involuntary}
        elapsed = now - before.get("time", now)
        cpu_rate = rate(before.get("cpu"), now_counters["cpu"], elapsed)
        row.update(alive=True, cpu_seconds=round(now_counters["cpu"], 3),
                   cpu_percent=None if cpu_rate is None else round(cpu_rate * 100, 1),
                   rss_bytes=memory.rss, threads=threads, open_files=fds,
                   read_bytes=now_counters["read"], write_bytes=now_counters["write"],
                   read_bytes_per_s=rounded(rate(before.get("read"), now_counters["read"], elapsed)),
                   write_bytes_per_s=rounded(rate(before.get("write"), now_counters["write"],
                                                 elapsed)),
                   ctx_switches=now_counters["ctx"],
                   ctx_switches_per_s=rounded(rate(before.get("ctx"), now_counters["ctx"], elapsed)))
        before.clear()
        before.update(now_counters)
        return row
