"""Inference workloads: what to simulate (:class:`InferenceOptions`), the workload a name
or file resolves to for an inference pass (:func:`load`: an LLM preset in its prefill or
decode phase, any other zoo model or workload file) and the weight-byte ratio N:M storage
gives it (:func:`weight_byte_ratio`). :mod:`nmsat.simulator.inference` runs them; the RTL
testbench compiles the same workloads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nmsat.config import AcceleratorConfig
from nmsat.dataflow.inference import ActDensity
from nmsat.reference import compressed_bytes, dense_bytes
from nmsat.types import DATAFLOW_CHOICES, DEFAULT_NM, NM, DType, Method, Phase
from nmsat.workloads import llm
from nmsat.workloads.layers import Conv2d, Linear, Workload

__all__ = ["InferenceOptions", "InferenceWorkload", "load", "weight_byte_ratio"]


@dataclass(frozen=True)
class InferenceOptions:
    """What to simulate. ``phase`` is for LLM workloads (``prefill`` or ``decode``);
    ``seq_len`` is the prompt length (prefill, and the zoo's language models), ``kv_len``
    the KV-cache positions of a decode step."""

    nm: NM = DEFAULT_NM
    batch: int = 1
    phase: llm.LlmPhase | None = None
    seq_len: int | None = None
    kv_len: int | None = None
    density: ActDensity = field(default_factory=ActDensity.dense)
    interleave: bool = True
    offline_schedule: bool = True
    dataflow: str = "auto"  # os, ws: every GEMM block; auto: the schedule picks per task
    exact: bool = False  # simulate every decoder layer (no identical-layer extension)
    input_shape: tuple[int, ...] | None = None
    """Per-sample input of a PyTorch workload (``torchvision:NAME``, ``FILE.py:FACTORY``),
    without the batch (``batch`` gives it); ``None``: the importer's default."""
    layer_nm: tuple[tuple[str, NM], ...] = ()
    """Per-layer patterns that replace ``nm`` for the named layers (``1:1``: dense), as a
    training trace or a SCALE-Sim v3 ``Sparsity`` column fixes them (the CLI takes them
    from the workload file unless ``--nm`` is given)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "nm", NM.parse(self.nm))
        object.__setattr__(self, "layer_nm", tuple(
            (str(k), NM.parse(v)) for k, v in dict(self.layer_nm).items()))
        if self.phase is not None:
            object.__setattr__(self, "phase", llm.LlmPhase.parse(self.phase))
        for f in ("batch",):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"batch must be a positive integer, not {v!r}")
        for f in ("seq_len", "kv_len"):
            v = getattr(self, f)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"{f} must be a positive integer, not {v!r}")
        if self.dataflow not in DATAFLOW_CHOICES:
            raise ValueError(f"dataflow must be auto, os or ws, not {self.dataflow!r}")
        if not isinstance(self.density, ActDensity):
            raise ValueError(f"density must be an ActDensity, not {self.density!r}")


@dataclass(frozen=True)
class InferenceWorkload:
    """A workload to serve, with what the LLM machinery needs to know about it."""

    workload: Workload
    spec: llm.DecoderSpec | None = None
    phase: llm.LlmPhase | None = None
    seq_len: int | None = None
    kv_len: int | None = None

    @property
    def tokens(self) -> int:
        """Tokens produced (decode) or consumed (prefill, language models) per pass."""
        if self.phase is llm.LlmPhase.DECODE:
            return self.workload.batch
        if self.seq_len is not None:
            return self.workload.batch * self.seq_len
        return 0


def load(spec: str, opts: InferenceOptions) -> InferenceWorkload:
    """Resolve WORKLOAD for inference: an LLM preset (``gpt2_small``, ``llama_7b``) in the
    given phase (prefill when none is given), or any other zoo name or workload file
    (``phase`` must then be unset)."""
    if llm.is_llm(spec):
        s = llm.spec(spec)
        phase = opts.phase or llm.LlmPhase.PREFILL
        if phase is llm.LlmPhase.DECODE:
            if opts.seq_len is not None:
                raise ValueError("the decode phase takes --kv-len (cache positions), "
                                 "not --seq-len")
            kv = opts.kv_len if opts.kv_len is not None else llm.default_context(s)
            w = llm.workload(s, phase, opts.batch, kv_len=kv)
            return InferenceWorkload(w, s, phase, None, kv)
        if opts.kv_len is not None:
            raise ValueError("--kv-len is for the decode phase")
        seq = opts.seq_len if opts.seq_len is not None else llm.default_context(s)
        w = llm.workload(s, phase, opts.batch, seq_len=seq)
        return InferenceWorkload(w, s, phase, seq, None)
    if opts.phase is not None:
        raise ValueError(f"--phase is for LLM workloads ({', '.join(llm.PRESETS)}), "
                         f"not {spec}")
    if opts.kv_len is not None:
        raise ValueError(f"--kv-len is for LLM workloads ({', '.join(llm.PRESETS)})")
    from nmsat.workloads import zoo

    shape = None if opts.input_shape is None else (opts.batch, *opts.input_shape)
    loaded = zoo.load(spec, batch=opts.batch, seq_len=opts.seq_len, input_shape=shape)
    seq_len = opts.seq_len
    if seq_len is None and spec in zoo.names():
        seq_len = zoo.model(spec).seq_len
    return InferenceWorkload(loaded.workload, seq_len=seq_len)


def weight_byte_ratio(workload: Workload, nm: NM, cfg: AcceleratorConfig,
                      layer_nm: tuple[tuple[str, NM], ...] = ()) -> float:
    """Dense weight bytes over stored weight bytes under ``nm`` (or a layer's
    ``layer_nm`` pattern; layers N:M cannot apply to stay dense), computed with
    :func:`nmsat.reference.compressed_bytes`."""
    dt = DType.parse(cfg.numerics.dtype)
    per = dict(layer_nm)
    default = nm
    dense = sparse = 0
    for layer in workload.layers:
        if not isinstance(layer, (Linear, Conv2d)):
            continue
        if isinstance(layer, Conv2d):
            shape = (layer.kh * layer.kw * (layer.in_ch // layer.groups), layer.out_ch)
        else:
            shape = (layer.in_features, layer.out_features)
        d = dense_bytes(shape, dt)
        dense += d
        nm = per.get(layer.name, default)
        if not nm.dense and layer.nm_applies(Phase.FF, Method.BDWP, nm):
            sparse += compressed_bytes(shape, nm, 0, dt)
        else:
            sparse += d
    return dense / sparse if sparse else 1.0
