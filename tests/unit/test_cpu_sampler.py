"""The CPU sampler records stacks only while the process spends CPU, and summarises them."""

from __future__ import annotations

import time
from pathlib import Path

from shared.cpu_sampler import CpuSampler, sampled, tops


def _spin(rounds: int) -> int:
    total = 0
    for i in range(rounds):
        total += i * i % 7
    return total


def _until_sampled(sampler: CpuSampler, wanted: int) -> None:
    """Spends CPU until the sampler holds ``wanted`` samples (bounded by work, not time)."""
    for _ in range(10_000):
        if sum(sampler.stacks.values()) >= wanted:
            return
        _spin(20_000)
    raise AssertionError(f"fewer than {wanted} samples after all that work")


def test_samples_name_the_function_that_spent_the_cpu(tmp_path: Path) -> None:
    sampler = CpuSampler()
    sampler.start()
    try:
        _until_sampled(sampler, 20)
    finally:
        sampler.stop()
    assert any("_spin (" in stack.rsplit(";", 1)[-1] for stack in sampler.stacks)
    target = tmp_path / "x.stacks"
    sampler.write(target)
    lines = target.read_text().splitlines()
    assert sum(int(line.rpartition(" ")[2]) for line in lines) == sum(sampler.stacks.values())
    summary = tops(target, 500)
    assert "_until_sampled" in summary.split("self:")[0]  # inclusive: on every stack


def test_sleeping_is_not_sampled(tmp_path: Path) -> None:
    target = tmp_path / "sleep.stacks"
    with sampled(target):
        for _ in range(20):
            time.sleep(0.005)  # no CPU spent: no sample may name the sleep
    text = target.read_text()
    assert "sleep" not in text.replace("test_sleeping_is_not_sampled", "")


def test_a_stopped_sampler_takes_no_more_samples() -> None:
    sampler = CpuSampler()
    sampler.start()
    _until_sampled(sampler, 3)
    sampler.stop()
    taken = sum(sampler.stacks.values())
    _spin(2_000_000)
    assert sum(sampler.stacks.values()) == taken
