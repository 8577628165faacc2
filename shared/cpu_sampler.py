"""A statistical profile of where a process spends its CPU, as collapsed stacks.

``SIGPROF`` fires each time the process has used another ``interval`` of CPU (the kernel
counts in its ticks, so a few milliseconds at least); the handler records the Python stack
the main thread was running.  A sample therefore stands for CPU spent, never for time waited
or descheduled: on a machine with more runnable processes than cores, a wall-clock sampler
(py-spy) shows a socket write as costly whenever the process is preempted inside it (the
receiver wakes and takes the core), which misled the spine's eighth to tenth parts
(docs/benchmarks.md).  Work done inside a C call is counted to the Python frame that made
the call, as the handler only runs between bytecodes.

The output has one line per distinct stack, ``frame;frame;... count``, the format
flame-graph tools read; :func:`tops` summarises it.  For the bench only
(``BATON_BENCH_PROFILE=sample``): each sample costs the process a stack walk.
"""

from __future__ import annotations

import contextlib
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import FrameType


class CpuSampler:
    def __init__(self, interval: float = 0.001) -> None:
        self.interval = interval
        self.stacks: Counter[str] = Counter()

    def _sample(self, _signum: int, frame: FrameType | None) -> None:
        names = []
        while frame is not None:
            code = frame.f_code
            names.append(f"{code.co_name} ({code.co_filename}:{code.co_firstlineno})")
            frame = frame.f_back
        self.stacks[";".join(reversed(names))] += 1

    def start(self) -> None:
        signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)

    def stop(self) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, signal.SIG_DFL)

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as out:
            for stack, count in self.stacks.most_common():
                out.write(f"{stack} {count}\n")


@contextlib.contextmanager
def sampled(path: Path) -> Iterator[None]:
    """Sample the body's CPU and write the collapsed stacks to ``path`` at the end."""
    sampler = CpuSampler()
    sampler.start()
    try:
        yield
    finally:
        sampler.stop()
        sampler.write(path)


def tops(path: Path, top: int = 25) -> str:
    """The functions with the largest share of the samples, counting a function once per
    sample however deep it recurses (inclusive), and those the samples stopped in (self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"{total} samples; inclusive:"]
    lines += [f"{100 * n / total:5.1f}% {frame}" for frame, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"{100 * n / total:5.1f}% {frame}" for frame, n in own.most_common(top)]
    return "\n".join(lines) + "\n"
