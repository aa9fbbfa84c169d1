"""``nmsat rtl run --controller``: a layer program through the RTL tile controller."""

import pytest

from nmsat.commands import main

SINGLE_2X2_TOML = ('preset = "small"\n\n[array]\nrows = 2\ncols = 2\n\n'
                   + "".join(f"[buffers.{b}]\ndouble_buffered = false\n\n"
                             for b in ("activation", "weight", "output")))


def test_controller_refuses_skip_config(tmp_path, capsys):
    """Double-buffered configs run (the presets'); act_zero = skip has no DMA side here."""
    cfg = tmp_path / "skip.toml"
    cfg.write_text('preset = "small"\n\n[array]\nrows = 2\ncols = 2\nact_zero = "skip"\n')
    assert main(["rtl", "run", "mlp", "--layer", "fc2", "--config", str(cfg),
                 "--controller"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "array.act_zero = skip is not supported" in err[0]


@pytest.mark.rtl
def test_controller_runs_a_layer(tmp_path, capsys):
    cfg = tmp_path / "single.toml"
    cfg.write_text(SINGLE_2X2_TOML)
    rc = main(["rtl", "run", "mlp", "--layer", "fc2", "--batch", "2", "--config", str(cfg),
               "--controller"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "512 words stored, 0 mismatches" in out and "DIFFERENT" not in out
