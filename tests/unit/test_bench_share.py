"""The bench compares a burst with the run floors measured on either side of it."""

from __future__ import annotations

from typing import Any

from bench.bench_harness import bracketing_floors, median_shares, share_of_floors


def floor(runs_per_s: float) -> dict[str, Any]:
    return {"scenario": "run-floor", "runs_per_s": runs_per_s}


def burst(name: str, completed_per_s: float) -> dict[str, Any]:
    return {"scenario": name, "runs": 1000, "completed_per_s": completed_per_s}


def test_a_burst_is_compared_with_the_floors_either_side_of_it() -> None:
    first, second = burst("burst-1k", 100.0), burst("burst-10k", 120.0)
    results = [floor(200.0), first, floor(300.0), second, floor(240.0)]

    assert bracketing_floors(results, first) == [200.0, 300.0]
    assert bracketing_floors(results, second) == [300.0, 240.0]
    assert share_of_floors(first, [200.0, 300.0]) == "40%"  # 100 / 250
    assert share_of_floors(second, [300.0, 240.0]) == "44%"  # 120 / 270


def test_without_a_floor_after_it_the_one_before_is_used() -> None:
    only = burst("burst-1k", 90.0)
    results = [floor(200.0), floor(180.0), only]

    assert bracketing_floors(results, only) == [180.0]
    assert share_of_floors(only, []) == "?"


def test_rounds_of_a_burst_give_the_median_of_their_shares() -> None:
    rounds = [burst("burst-1k", c) for c in (100.0, 150.0, 120.0)]
    once = burst("burst-10k", 90.0)
    results = [floor(300.0), rounds[0], floor(300.0), rounds[1], floor(300.0), rounds[2],
               floor(300.0), once, floor(300.0)]

    lines = median_shares(results, [*rounds, once])

    # 33 %, 50 %, 40 %: the median is the middle one, not the mean or the last
    assert lines == ["burst-1k: median share of the run floor 40% over 3 rounds "
                     "(33%, 50%, 40%)"]


def test_the_completion_curve_says_when_each_share_of_the_runs_had_completed() -> None:
    from bench.bench_harness import completion_curve

    completed = [10.0 + second for second in range(1, 101)]  # one a second, from 11 s
    assert completion_curve(completed, began=10.0) == {
        "50%": 50.0, "90%": 90.0, "99%": 99.0, "100%": 100.0}
    assert completion_curve([12.5], began=10.0) == {"50%": 2.5, "90%": 2.5, "99%": 2.5,
                                                    "100%": 2.5}
    assert completion_curve([], began=10.0) == {}
