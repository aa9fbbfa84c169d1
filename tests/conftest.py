"""Collection order for pytest-xdist: the long tests first, longest first.

pytest-xdist hands tests to its workers in collection order. A test of several minutes
that is collected late starts when the other worker has little left to do, and the run
then ends on one core (on CI's 2 cores, the whole suite took about 52 minutes with
``tests/test_examples.py``'s RTL commands running alone for the last 19). Marking a
test ``@pytest.mark.slow(seconds=N)``, N its duration on an idle 2-core machine
(``pytest --durations``), moves it to the front, ordered by N; the rest keep their
order. ``scripts/test.sh`` passes ``--maxschedchunk 1`` so that each worker takes the
next test when it frees up (longest-first list scheduling): by default xdist hands each
worker a consecutive quarter of its share up front, which gave one worker every long
test. The order does not change what a test checks: every test builds its own
inputs, and shared simulator builds are cached under a lock (``tests/rtl/conftest.py``).

After each module's tests the garbage collector runs (``_collect_per_module``). Amaranth
warns from a finaliser about an elaboratable that was built and never elaborated, and
warnings are errors here; without the collection that warning fires in whichever later
test the collector happens to run in, so a leftover in one module failed an unrelated one.
"""

from __future__ import annotations

import gc

import pytest


def _seconds(item: pytest.Item) -> float:
    mark = item.get_closest_marker("slow")
    if mark is None:
        return 0.0
    return float(mark.kwargs.get("seconds", 1.0))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -_seconds(item))  # stable: equal keys keep their order


@pytest.fixture(autouse=True, scope="module")
def _collect_per_module():
    yield
    gc.collect()
