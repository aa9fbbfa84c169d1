"""The RTL simulation cache's build folder: one process builds, any number simulate
(``nmsat.fileio.file_lock``, ``nmsat.rtl.tb.runner.build_and_test``)."""

import fcntl
import os

import pytest

from nmsat.fileio import file_lock
from nmsat.rtl.tb.runner import RtlRunError, build_and_test, logs


def _try(path, how) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, how | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_shared_holders_coexist_and_exclude_an_exclusive_one(tmp_path):
    lock = tmp_path / "b.lock"
    with file_lock(lock, shared=True):
        assert _try(lock, fcntl.LOCK_SH)
        assert not _try(lock, fcntl.LOCK_EX)
    with file_lock(lock):
        assert not _try(lock, fcntl.LOCK_SH)
    assert _try(lock, fcntl.LOCK_EX)


class _Runner:
    """cocotb's runner as build_and_test uses it: build() and test() with log files."""

    def __init__(self, result, fail=False):
        self.builds, self.tests, self.result, self.fail = 0, 0, result, fail

    def build(self, build_dir, log_file, **kw):
        build_dir.mkdir(parents=True, exist_ok=True)
        self.builds += 1

    def test(self, build_dir, log_file, hdl_toplevel_lang, **kw):
        self.tests += 1
        # a simulation holds the build shared: another may run, nothing may rebuild
        lock = build_dir.with_name(build_dir.name + ".lock")
        assert _try(lock, fcntl.LOCK_SH) and not _try(lock, fcntl.LOCK_EX)
        log_file.write_text(f"run {self.tests}\n")
        if self.fail:
            raise RuntimeError("simulator exit 1")
        self.result.write_text("{}")


def test_a_build_is_made_once_and_each_run_leaves_its_log(tmp_path):
    build_dir, result = tmp_path / "icarus_abc", tmp_path / "r.json"
    runner = _Runner(result)
    for _ in range(3):
        result.unlink(missing_ok=True)
        build_and_test(runner, "icarus", build_dir, {"sources": ["a.v"]}, {}, result, "x")
    assert (runner.builds, runner.tests) == (1, 3)
    assert logs(build_dir)[1].read_text() == "run 3\n"
    # other build arguments (another optimisation level, say): built again
    build_and_test(runner, "icarus", build_dir, {"sources": ["a.v"], "build_args": ["-O2"]},
                   {}, result, "x")
    assert runner.builds == 2
    assert not list(tmp_path.glob("*.tmp"))


def test_a_failed_run_names_its_log_and_leaves_no_temporary_file(tmp_path):
    build_dir, result = tmp_path / "icarus_abc", tmp_path / "r.json"
    with pytest.raises(RtlRunError, match=r"simulation of x failed .*icarus_abc\.run\.log"):
        build_and_test(_Runner(result, fail=True), "icarus", build_dir, {}, {}, result, "x")
    assert logs(build_dir)[1].read_text() == "run 1\n"
    assert not list(tmp_path.glob("*.tmp"))
