"""``client.streamed.in_order``: a download's ranges, several fetched at once, handed over in
their order."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from securecomm.client.streamed import in_order


class Tasks:
    """Tasks that take a while, in an order where later ones finish first, recording how
    many run at once and which began."""

    def __init__(self, count: int, fail_at: int | None = None) -> None:
        self.count, self.fail_at = count, fail_at
        self.began: list[int] = []
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    def task(self, index: int) -> Callable[[], int]:
        def run() -> int:
            with self._lock:
                self.began.append(index)
                self.running += 1
                self.most = max(self.most, self.running)
            time.sleep(0.02 * (3 - index % 3))  # the later of each three is done first
            with self._lock:
                self.running -= 1
            if index == self.fail_at:
                raise OSError(f"task {index} failed")
            return index

        return run

    def __iter__(self) -> Iterator[Callable[[], int]]:
        return (self.task(index) for index in range(self.count))


@pytest.mark.parametrize("at_once", [1, 2, 3])
def test_results_come_in_order_with_at_most_so_many_at_once(at_once: int) -> None:
    tasks = Tasks(10)
    assert list(in_order(iter(tasks), at_once=at_once)) == list(range(10))
    assert tasks.most == at_once


def test_the_next_ones_are_made_while_the_caller_works_on_one() -> None:
    tasks = Tasks(6)
    results = in_order(iter(tasks), at_once=2)
    assert next(results) == 0
    time.sleep(0.2)  # the caller at work: tasks 1 and 2 are under way, and done by now
    assert sorted(tasks.began) == [0, 1, 2]
    assert list(results) == [1, 2, 3, 4, 5]


def test_a_failed_task_raises_in_its_place() -> None:
    tasks = Tasks(8, fail_at=3)
    got: list[int] = []
    with pytest.raises(OSError, match="task 3 failed"):
        for value in in_order(iter(tasks), at_once=2):
            got.append(value)
    assert got == [0, 1, 2]
    assert tasks.running == 0  # none left running after the error
    assert max(tasks.began) <= 5  # nothing made far past it


def test_closing_it_makes_no_more_and_waits_for_those_under_way() -> None:
    tasks = Tasks(100)
    results = in_order(iter(tasks), at_once=2)
    assert [next(results), next(results)] == [0, 1]
    results.close()
    assert tasks.running == 0
    assert len(tasks.began) <= 5
