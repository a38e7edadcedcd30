"""Memory trace of a node for soak diagnosis (off unless ``SAR_ATD_MEMTRACE`` is set).

With ``SAR_ATD_MEMTRACE=FILE`` in a node's environment, the node starts ``tracemalloc``
and appends one JSON line to ``FILE.<node name>.jsonl`` every ``SAR_ATD_MEMTRACE_PERIOD_S``
seconds (default 30): seconds since start, the process RSS and the Python heap that
``tracemalloc`` sees (KiB), the sizes of the containers the node names, glibc's malloc
statistics (``mallinfo2``: arena bytes in use and free) and the ``top`` source lines whose
Python allocations grew most since the first line. RSS growing while the traced heap stays
flat points at native memory (DDS, allocator); a traced line growing names the culprit.
Tracing slows allocation down and its records take memory: a diagnosis tool, never on in
a measured run; with ``SAR_ATD_MEMTRACE_FRAMES=0`` only the cheap figures (RSS, malloc,
mappings, container sizes) are written, without ``tracemalloc``.
"""

from __future__ import annotations

import ctypes
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "SAR_ATD_MEMTRACE"


def rss_kib() -> int:
    """Resident set size of this process (KiB; 0 where /proc is absent)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_by_mapping() -> dict[str, int]:
    """RSS (KiB) split by mapping kind from /proc/self/smaps: ``heap`` (the main malloc
    arena), ``anon`` (thread arenas, mmapped chunks, stacks), ``shm`` (/dev/shm: DDS
    shared-memory transport), ``file`` (libraries and other files); empty without /proc."""
    out = {"heap": 0, "anon": 0, "shm": 0, "file": 0}
    kind = "anon"
    try:
        with open("/proc/self/smaps") as f:
            for line in f:
                head = line.split(None, 1)[0]
                if not head.endswith(":"):  # a mapping's first line: address perms ... name
                    name = line.split()[5] if len(line.split()) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "shm" if name.startswith(
                        "/dev/shm") else "file" if name.startswith("/") else "anon")
                elif head == "Rss:":
                    out[kind] += int(line.split()[1])
    except OSError:
        return {}
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def malloc_info() -> dict[str, int]:
    """glibc heap statistics in KiB (``arena``: main-arena bytes from the system,
    ``mmap``: mmapped chunks, ``in_use``, ``free``); empty where mallinfo2 is absent."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        fn = libc.mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = _MallInfo2
    m = fn()
    return {"arena": m.arena // 1024, "mmap": m.hblkhd // 1024,
            "in_use": m.uordblks // 1024, "free": m.fordblks // 1024}


class MemTrace:
    """Periodic memory lines of ``node`` (module doc); ``sizes`` returns container sizes."""

    def __init__(self, node: Any, path: str, sizes: Callable[[], dict[str, int]],
                 period_s: float = 30.0, top: int = 15) -> None:
        self.path = Path(f"{path}.{node.get_name()}.jsonl")
        self.sizes = sizes
        self.top = top
        self.t0 = time.monotonic()
        self.base: tracemalloc.Snapshot | None = None
        frames = int(os.environ.get(f"{ENV}_FRAMES", "1") or 1)
        if frames > 0 and not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        self.timer = node.create_timer(period_s, self.write)

    def write(self, phase: str = "running") -> None:
        """Append one line (``phase`` names the moment, e.g. before the final report)."""
        grown: list[dict[str, Any]] = []
        if tracemalloc.is_tracing():
            snap = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)])
            if self.base is None:
                self.base = snap
            key = "traceback" if tracemalloc.get_traceback_limit() > 1 else "lineno"
            grown = [{"where": " <- ".join(f"{Path(fr.filename).name}:{fr.lineno}"
                                           for fr in s.traceback),
                      "kib": round(s.size_diff / 1024, 1), "count": s.count_diff}
                     for s in snap.compare_to(self.base, key)[:self.top]]
        line = {"t_s": round(time.monotonic() - self.t0, 1), "phase": phase,
                "rss_kib": rss_kib(),
                "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
                "malloc_kib": malloc_info(), "rss_by_mapping_kib": rss_by_mapping(),
                "sizes": self.sizes(), "grown": grown}
        with self.path.open("a") as f:
            f.write(json.dumps(line) + "\n")


def maybe_trace(node: Any, sizes: Callable[[], dict[str, int]]) -> MemTrace | None:
    """A :class:`MemTrace` of ``node`` when ``SAR_ATD_MEMTRACE`` is set, else None."""
    path = os.environ.get(ENV, "")
    if not path:
        return None
    return MemTrace(node, path, sizes,
                    float(os.environ.get(f"{ENV}_PERIOD_S", "30") or 30))
