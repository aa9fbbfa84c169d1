"""Read a SCALE-Sim ``.cfg`` (v2 or v3, INI via :mod:`configparser`) into an nmsat
:class:`~nmsat.config.AcceleratorConfig`, with one note for each field that does not map.

What maps (``docs/scalesim.md`` has the table):

* ``[general] run_name`` -> ``name``;
* ``[architecture_presets] ArrayHeight`` / ``ArrayWidth`` -> ``array.rows`` / ``array.cols``.
  A SCALE-Sim PE does one MAC per cycle with no adder latency, so the PE is
  ``array.macs_per_pe = 1``, ``array.acc_latency = 1``; a one-multiplier PE runs the N:M
  patterns with N = 1 (``array.nm_patterns = 1:2, 1:4, 1:8``, ``array.act_window = 8``);
* ``IfmapSramSzkB`` / ``FilterSramSzkB`` / ``OfmapSramSzkB`` -> ``buffers.activation`` /
  ``weight`` / ``output.kib``. SCALE-Sim's scratchpads are double buffered with half
  active (``active_buf_frac = 0.5`` in ``single_layer_sim.py``), as nmsat's are;
* SCALE-Sim's word is one byte (``word_size = 1`` in ``single_layer_sim.py``) ->
  ``numerics.dtype = int8``;
* ``Dataflow`` os | ws -> ``array.dataflows`` (``is`` has no nmsat equivalent: a note);
* ``[run_presets] InterfaceBandwidth = USER`` with ``Bandwidth`` (words per cycle) ->
  one DRAM channel of ``Bandwidth`` bytes per cycle. ``CALC`` (SCALE-Sim sizes the
  bandwidth so nothing stalls) has no nmsat equivalent: the preset's DRAM stays, with a
  note.

Everything else (offsets, request buffers, layout, sparsity, Ramulator, topology path,
unknown keys) is named in a note. Fields SCALE-Sim does not have keep the ``vcu1525``
preset's values.
"""

from __future__ import annotations

import configparser
from pathlib import Path

from .config import VCU1525, AcceleratorConfig, from_dict, to_dict
from .errors import ConfigError
from .fileio import LIMITS, read_text

__all__ = ["SCALESIM_PE", "SCALESIM_WORD_BYTES", "read"]

__all__ = ["SCALESIM_PE", "SCALESIM_WORD_BYTES", "read"]

SCALESIM_WORD_BYTES = 1
"""SCALE-Sim's word: ``word_size = 1`` byte (scale-sim-v3 ``single_layer_sim.py``)."""

SCALESIM_PE = {"array.macs_per_pe": 1, "array.acc_latency": 1, "array.act_window": 8,
               "array.nm_patterns": ["1:2", "1:4", "1:8"]}
"""A SCALE-Sim PE: one MAC per cycle, results the cycle they are computed. With one
multiplier, N:M patterns need N = 1; an 8-wide window runs 1:2, 1:4 and 1:8."""

# (section, key) -> why it does not map. Keys are lower case (configparser folds them).
_UNMAPPED = {
    ("architecture_presets", "ifmapoffset"): "trace addresses; nmsat writes no address traces",
    ("architecture_presets", "filteroffset"): "trace addresses; nmsat writes no address traces",
    ("architecture_presets", "ofmapoffset"): "trace addresses; nmsat writes no address traces",
    ("architecture_presets", "memorybanks"): "SCALE-Sim does not read it either; nmsat's "
                                             "banks are buffers.*.banks",
    ("architecture_presets", "readrequestbuffer"): "Ramulator request queue; nmsat's DRAM "
                                                   "model has none (dram.model)",
    ("architecture_presets", "writerequestbuffer"): "Ramulator request queue; nmsat's DRAM "
                                                    "model has none (dram.model)",
    ("run_presets", "useramulatortrace"): "nmsat models DRAM itself (dram.model)",
    ("network_presets", "topologycsvloc"): "give the topology as WORKLOAD "
                                           "(nmsat simulate TOPOLOGY.csv --config FILE.cfg)",
    ("network_presets", "layoutcsvloc"): "nmsat lays out buffers itself (buffers.act_layout)",
}
_LAYOUT_NOTE = "SCALE-Sim's custom SRAM layout; nmsat's banks are buffers.*.banks"
_SPARSITY_NOTE = ("SCALE-Sim v3's sparsity; nmsat takes the pattern from --nm or the "
                  "topology's Sparsity column")


def read(path: str | Path) -> tuple[AcceleratorConfig, list[str]]:
    """The nmsat config a SCALE-Sim ``.cfg`` describes, and one note per field that does
    not map (``section.Key: why``). Raises :class:`ConfigError` naming the file and field
    for a file that is not INI, a missing array size or a value out of range."""
    p = Path(path)
    text = read_text(p, "config file", LIMITS["config"])
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read_string(text, source=str(p))
    except configparser.Error as e:
        raise ConfigError(f"{p}: not a SCALE-Sim .cfg: {str(e).splitlines()[0]}") from None
    notes: list[str] = []
    changes: dict[str, object] = dict(SCALESIM_PE)
    changes["numerics.dtype"] = "int8"
    seen: set[tuple[str, str]] = set()

    def get(section: str, key: str) -> str | None:
        if parser.has_option(section, key):
            seen.add((section.lower(), key.lower()))
            return parser.get(section, key).strip()
        return None

    def integer(section: str, key: str, field: str) -> int | None:
        v = get(section, key)
        if v is None:
            return None
        try:
            return int(v)
        except ValueError:
            raise ConfigError(f"{p}: [{section}] {key} = {v!r} is not an integer "
                              f"(nmsat's {field})") from None

    name = get("general", "run_name")
    changes["name"] = name or p.stem
    for key, field in (("ArrayHeight", "array.rows"), ("ArrayWidth", "array.cols")):
        v = integer("architecture_presets", key, field)
        if v is None:
            raise ConfigError(f"{p}: [architecture_presets] {key} is missing (nmsat's {field})")
        changes[field] = v
    for key, field in (("IfmapSramSzkB", "buffers.activation.kib"),
                       ("FilterSramSzkB", "buffers.weight.kib"),
                       ("OfmapSramSzkB", "buffers.output.kib")):
        v = integer("architecture_presets", key, field)
        if v is not None:
            changes[field] = v
    df = get("architecture_presets", "Dataflow")
    if df is not None:
        if df.lower() in ("os", "ws"):
            changes["array.dataflows"] = [df.lower()]
        else:
            notes.append(f"architecture_presets.Dataflow = {df}: nmsat has os and ws (no input "
                         "stationary); the compiler chooses between them per layer")
    mode = get("run_presets", "InterfaceBandwidth")
    bw = get("architecture_presets", "Bandwidth")
    if mode is not None and mode.upper() == "USER":
        if bw is None:
            raise ConfigError(f"{p}: InterfaceBandwidth = USER needs [architecture_presets] "
                              "Bandwidth (nmsat's dram.bytes_per_cycle)")
        try:
            words = float(bw)
        except ValueError:
            words = float("nan")
        if not (words >= 1 and words == int(words)):
            raise ConfigError(f"{p}: [architecture_presets] Bandwidth = {bw!r} must be a "
                              "whole number of words per cycle (nmsat's dram.bytes_per_cycle)")
        changes["dram.channels"] = 1
        changes["dram.bytes_per_cycle"] = int(words) * SCALESIM_WORD_BYTES
        notes.append(f"architecture_presets.Bandwidth = {bw}: SCALE-Sim gives each operand "
                     f"(IFMAP, FILTER, OFMAP) {bw} words/cycle; nmsat's one DRAM channel of "
                     f"{int(words) * SCALESIM_WORD_BYTES} B/cycle is shared by all three")
    else:
        if bw is not None:
            notes.append(f"architecture_presets.Bandwidth = {bw}: SCALE-Sim reads it only with "
                         "InterfaceBandwidth = USER")
        if mode is not None:
            d = VCU1525.dram
            notes.append(f"run_presets.InterfaceBandwidth = {mode}: SCALE-Sim sizes the "
                         "bandwidth so that nothing stalls; nmsat models a DRAM: the vcu1525 "
                         f"preset's {d.channels} x {d.bytes_per_cycle} B/cycle stays "
                         "(set dram.* in a .toml to change it)")
    for section in parser.sections():
        for key in parser.options(section):
            where = (section.lower(), key.lower())
            if where in seen:
                continue
            value = parser.get(section, key).strip()
            why = _UNMAPPED.get(where)
            if why is None and where[0] == "layout":
                why = _LAYOUT_NOTE
            elif why is None and where[0] == "sparsity":
                why = _SPARSITY_NOTE
            elif why is None:
                why = "not a SCALE-Sim field nmsat knows"
            notes.append(f"{section}.{_spelling(text, key)} = {value}: not mapped ({why})")
    data = to_dict(VCU1525)
    for dotted, setting in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = setting
    try:
        cfg = from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    return cfg, notes


def _spelling(text: str, key: str) -> str:
    """``key`` as the file writes it (configparser folds keys to lower case)."""
    for line in text.splitlines():
        head = line.split("=", 1)[0].split(":", 1)[0].strip()
        if head.lower() == key:
            return head
    return key
