"""Inference lowering: FF-only tile programs with pre-compressed N:M weights, and the
activation-sparsity rewrite.

The compiler (:func:`nmsat.dataflow.compiler.compile_workload` with
``Mode.INFERENCE``) already lowers every layer's FF GEMM only, with N:M weights stored
compressed in DRAM (values plus ``ceil(log2 M)``-bit indices, ``Tensor.nm``) and no SORE
work: weights are pruned and packed offline, so no mask is generated online. This module
adds what serving needs on top of it:

* :func:`compile_inference` - the FF program for a batch, an N:M pattern (dense: ``1:1``)
  and the activation-sparsity option of ``cfg.array.act_zero``;
* :class:`ActDensity` - per-layer activation density (fraction of nonzero activations at a
  layer's GEMM input): from a training trace (measured zero fractions), one figure for
  every weighted layer, or dense;
* :func:`apply_activation_skip` - the cycle effect of ``act_zero = skip``
  (``docs/architecture.md`` section 3.3): in WS, an activation row's K-tile slice enters
  the array as R consecutive chunks (one per PE row); the feeder may drop the row from the
  stream only if every activation of the slice is zero, since any nonzero element is
  selected by some column's index mux. Under independent zeros at density d the expected
  fraction of droppable rows is ``(1 - d) ** (R * K per cycle)``, and each WS block
  streams ``m - floor(m * that)`` rows. OS cannot skip: a chunk step is shared by the R x
  sigma rows of a pass, so it could be dropped only if all of them were zero, with
  probability ``(1 - d) ** (R * sigma * K per cycle)`` (below 1e-70 at d = 0.5 on
  vcu1525); it is counted as zero.

  This is the whole-model view, which has no activation data. Given a block's operands
  the dropped rows are exact: :func:`nmsat.reference.skip_row_lists` per K-tile and
  :func:`nmsat.dataflow.timing.ws_skip_stream` for the cycles, which the per-cycle
  model and the RTL (``nmsat rtl run`` on a skip config) match; that view also has the
  partial-sum lag of section 4.1, which this rewrite ignores.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from nmsat.config import AcceleratorConfig
from nmsat.dataflow.compiler import CompileOptions, compile_workload
from nmsat.dataflow.isa import Compute, Program
from nmsat.types import DENSE, NM, ActZero, Dataflow, Mode
from nmsat.workloads.layers import Conv2d, Linear, Workload

__all__ = ["ActDensity", "apply_activation_skip", "compile_inference", "row_skip_fraction",
           "skip_rows"]


def _density(v: float, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or not 0.0 <= v <= 1.0:
        raise ValueError(f"{what} must be a number between 0 and 1, not {v!r}")
    return float(v)


@dataclass(frozen=True)
class ActDensity:
    """Fraction of nonzero activations at each weighted layer's GEMM input.

    ``per_layer`` maps layer names to densities; other weighted (Linear, Conv2d) layers
    take ``default``. Attention products (``Matmul``) read softmax outputs and projections,
    not ReLU outputs, and are always dense. ``source`` says where the figures came from.
    """

    default: float = 1.0
    per_layer: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "dense"

    def __post_init__(self) -> None:
        object.__setattr__(self, "default", _density(self.default, "activation density"))
        object.__setattr__(self, "per_layer", MappingProxyType(
            {k: _density(v, f"activation density of {k}") for k, v in self.per_layer.items()}))

    @classmethod
    def dense(cls) -> ActDensity:
        return cls()

    @classmethod
    def uniform(cls, density: float) -> ActDensity:
        """One figure (``--act-density D``) for every weighted layer."""
        return cls(default=density, source=f"--act-density {density:g}")

    @classmethod
    def from_trace(cls, trace_or_path) -> ActDensity:
        """Densities measured in a training trace: 1 - the fraction of exact zeros in each
        weight layer's input activations (statistic ``act_zero``) at the last recorded
        iteration, i.e. the trained model that is served. Layers not in the trace are
        dense."""
        from nmsat.workloads import trace as tr

        t = trace_or_path
        if isinstance(t, (str, Path)):
            t = tr.load_trace(t)
        per = {}
        for tl in t.weight_layers:
            zero = float(t.layer_stats(tl.name)["act_zero"][-1])
            per[tl.name] = 1.0 - zero
        return cls(default=1.0, per_layer=per, source=f"trace {t.model}")

    def of(self, layer) -> float:
        """Density of ``layer``'s GEMM activation operand."""
        if not isinstance(layer, (Linear, Conv2d)):
            return 1.0
        return self.per_layer.get(layer.name, self.default)


def row_skip_fraction(density: float, block: int) -> float:
    """Probability that all ``block`` activations of a row slice are zero, for independent
    zeros at ``density`` (the expected share of rows the WS feeder may drop)."""
    density = _density(density, "activation density")
    if block < 1:
        raise ValueError(f"block must be at least 1, not {block}")
    return (1.0 - density) ** block


def skip_rows(m: int, k: int, nm: NM, density: float, cfg: AcceleratorConfig) -> int:
    """Rows of a WS block of ``m`` rows and ``k`` reduction elements that the feeder drops
    (expected value, rounded down). A row's K-tile slice is ``min(k, R * K per cycle)``
    elements."""
    block = min(k, cfg.array.rows * cfg.array.k_per_cycle(nm))
    return math.floor(m * row_skip_fraction(density, block))


def apply_activation_skip(prog: Program, workload: Workload, density: ActDensity,
                          cfg: AcceleratorConfig) -> Program:
    """The program the engine really runs under ``act_zero = skip``: every WS ``COMPUTE``
    of a layer with density d < 1 streams its rows minus the dropped ones (at least one
    row: the block's weights are still loaded and its outputs written). OS blocks are
    unchanged (see the module docstring). The program's ``macs`` then count multiplies
    really issued; dense-equivalent work must be taken from the original program."""
    dens = [density.of(layer) for layer in workload.layers]
    out = []
    changed = False
    for ins in prog.instructions:
        if (isinstance(ins, Compute) and ins.dataflow is Dataflow.WS
                and ins.layer < len(dens) and dens[ins.layer] < 1.0):
            drop = skip_rows(ins.m, ins.k, ins.nm, dens[ins.layer], cfg)
            if drop:
                ins = dataclasses.replace(ins, m=max(1, ins.m - drop))
                changed = True
        out.append(ins)
    if not changed:
        return prog
    return dataclasses.replace(prog, instructions=tuple(out))


def compile_inference(workload: Workload, cfg: AcceleratorConfig, nm: NM | str = DENSE,
                      batch: int | None = None, density: ActDensity | None = None,
                      **options) -> tuple[Program, Program]:
    """Compile one inference pass (FF only, pre-compressed N:M weights).

    Returns ``(scheduled, executed)``: the compiler's program, and the program the engine
    runs after the activation-skip rewrite (the same object unless ``cfg.array.act_zero``
    is ``skip`` and some WS block drops rows). ``options`` are further
    :class:`~nmsat.dataflow.compiler.CompileOptions` fields (ablation switches).
    """
    opts = CompileOptions(nm=NM.parse(nm), mode=Mode.INFERENCE, batch=batch, **options)
    prog = compile_workload(workload, cfg, opts)
    act = ActZero.parse(cfg.array.act_zero)
    if act is ActZero.SKIP and density is not None:
        wl = workload if batch is None else dataclasses.replace(workload, batch=batch)
        return prog, apply_activation_skip(prog, wl, density, cfg)
    return prog, prog
