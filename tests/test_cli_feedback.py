"""Feedback on long work: global --quiet/--verbose, status lines of report building and
RTL generation, the HDL tools' output kept in a log file that a failure names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from nmsat import log
from nmsat.commands import main
from nmsat.rtl.tb.runner import RtlRunError, build_and_test, logs

SMALL = ["simulate", "mlp", "--config", "small", "--batch", "2"]


def test_report_building_shows_status_and_quiet_silences_it(tmp_path, capsys):
    assert main([*SMALL, "--report", str(tmp_path / "a")]) == 0
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert "report: simulating the dense baseline" in lines
    renders = [x for x in lines if x.startswith("report: rendering figure")]
    assert renders and renders[-1].startswith(f"report: rendering figure {len(renders)} of "
                                              f"{len(renders)} ")
    # the result is printed before the report is built, the report's path last
    assert out.index("speedup") < out.index(f"wrote {tmp_path / 'a' / 'index.html'}")
    for flag in (["-q"], ["--quiet"]):
        assert main([*flag, *SMALL, "--report", str(tmp_path / "b")]) == 0
        out_q, err_q = capsys.readouterr()
        assert err_q == "" and out_q.replace("/b/", "/a/") == out
    assert main([*SMALL, "--report", str(tmp_path / "c"), "--quiet"]) == 0  # after it too
    assert capsys.readouterr().err == ""


def test_quiet_and_verbose_together_is_a_usage_error(capsys):
    assert main(["-q", "config", "list", "-v"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "nmsat: error: --quiet and --verbose cannot be given together\n"


def test_levels(capsys):
    for argv, level in ((["config", "list"], logging.INFO), (["-q", "config", "list"],
                        logging.WARNING), (["config", "list", "--verbose"], logging.DEBUG)):
        assert main(argv) == 0
        assert log.LOGGER.level == level
        assert log.verbose() is (level == logging.DEBUG)
    capsys.readouterr()


class _Runner:
    """A stand-in for a cocotb runner: writes what a tool would print to the log file it
    is given (or to stdout), then fails at ``fail`` ("build" or "test")."""

    def __init__(self, fail: str | None, result: Path | None = None) -> None:
        self.fail, self.result, self.logs = fail, result, []

    def _step(self, step: str, log_file) -> None:
        self.logs.append(log_file)
        text = f"{step}: tool output\n"
        if log_file is None:
            print(text, end="")
        else:
            Path(log_file).write_text(text)
        if self.fail == step:
            raise RuntimeError("Command failed with return code: 1")
        if step == "test" and self.result is not None:
            self.result.write_text("{}")

    def build(self, build_dir, log_file=None, **kw):
        Path(build_dir).mkdir(exist_ok=True)
        self._step("build", log_file)

    def test(self, build_dir, log_file=None, **kw):
        self._step("test", log_file)


@pytest.mark.parametrize("fail", ["build", "test", "no result"])
def test_tool_output_goes_to_a_log_that_the_failure_names(tmp_path, capsys, fail):
    log.configure(logging.INFO)
    bd = tmp_path / "icarus_x"
    runner = _Runner(None if fail == "no result" else fail)
    with pytest.raises(RtlRunError) as e:
        build_and_test(runner, "icarus", bd, {}, {}, tmp_path / "r.json", "the engine")
    build_log, run_log = logs(bd)
    named = build_log if fail == "build" else run_log
    assert str(named) in str(e.value)
    assert named.read_text() == ("build" if fail == "build" else "test") + ": tool output\n"
    out, err = capsys.readouterr()
    assert out == ""  # the tools' output is in the logs, not on the terminal
    assert "first run for this configuration" in err


def test_verbose_passes_the_tool_output_through(tmp_path, capsys):
    log.configure(logging.DEBUG)
    result = tmp_path / "r.json"
    runner = _Runner(None, result)
    build_and_test(runner, "icarus", tmp_path / "b", {}, {}, result, "the engine")
    assert runner.logs == [None, None]
    assert capsys.readouterr().out == "build: tool output\ntest: tool output\n"
    log.configure(logging.INFO)
    runner = _Runner(None, result)
    build_and_test(runner, "icarus", tmp_path / "b", {}, {}, result, "the engine")
    # built by the first call (the folder is marked built): only the simulation runs,
    # into a log of its own that ends up as the run log
    assert len(runner.logs) == 1
    assert logs(tmp_path / "b")[1].read_text() == "test: tool output\n"
    err = capsys.readouterr().err
    assert "first run" not in err and "rtl: simulating the engine on icarus" in err


@pytest.mark.slow(seconds=55)
def test_rtl_generate_shows_each_unit(tmp_path, capsys):
    assert main(["rtl", "generate", "--config", "small", "-o", str(tmp_path / "v")]) == 0
    out, err = capsys.readouterr()
    steps = [x for x in err.splitlines() if x.startswith("rtl generate: ")]
    # one step per Verilog file written: every unit and the accelerator top
    n = len([x for x in out.splitlines() if ".v " in x])
    assert n == 6 and "nmsat_top" in steps[-1]
    assert len(steps) == n and steps[-1].endswith(f"({n} of {n})")
