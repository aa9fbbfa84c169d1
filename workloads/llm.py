"""LLM serving workloads: decoder-only transformers in two phases, prefill and decode.

A :class:`DecoderSpec` holds the shape of a decoder (hidden size, layers, query heads, KV
heads for grouped-query attention, FFN size and kind, vocabulary). Presets:
:data:`GPT2_SMALL` (the zoo's ``gpt2_small``: LayerNorm, GELU MLP, multi-head attention,
tied LM head) and :data:`LLAMA_7B` (a 7B-shaped Llama: RMSNorm, SwiGLU gate/up/down, untied
LM head; hidden 4096, 32 layers, 32 heads, 32 KV heads, FFN 11008, vocabulary 32000), plus
:data:`STORIES_260K` (llama2.c's 260K-parameter Llama, small enough for the RTL).

Phases (:class:`LlmPhase`)

``prefill``
    The whole prompt of ``seq_len`` tokens per sequence: every projection is a GEMM with
    ``batch x seq_len`` rows, attention scores ``Q K^T`` and context ``P V`` are full
    ``seq_len x seq_len`` products (the causal mask folded into the softmax, as in the zoo).
    The keys and values (the K and V projections' outputs, GPT-2's k and v slices of
    ``attn.c_attn``) are the KV cache, written to DRAM.
``decode``
    One new token per sequence against a KV cache of ``kv_len`` positions (the cache after
    this step's K and V are appended): every projection is GEMV-shaped (``batch`` rows),
    the score product of a KV head is ``[g, hd] x [hd, kv_len]`` and the context product
    ``[g, kv_len] x [kv_len, hd]``, where g = heads / kv_heads query heads share the head's
    cache (grouped-query attention: the cache is read once per KV head, not per query
    head). The cache is the B operand of those products, so its reads are the LOADs of
    those layers' B tensors: :func:`kv_cache_layers` names them.

Layers and their names follow Hugging Face. ``GPT2LMHeadModel`` (names relative to its
``transformer``, and ``lm_head``): ``h.{i}.ln_1``, ``h.{i}.attn.c_attn`` (one fused
projection, d -> 3d with bias, whose output is split into q, k and v: the splits are
slices of one tensor, not layers), ``h.{i}.attn.c_proj``, ``h.{i}.ln_2``,
``h.{i}.mlp.c_fc``, ``h.{i}.mlp.c_proj``, ``ln_f``. ``LlamaForCausalLM``: separate
``model.layers.{i}.self_attn.q_proj``, ``k_proj``, ``v_proj``, then ``o_proj``,
``mlp.gate_proj``, ``up_proj``, ``down_proj``. :func:`layer_names` gives the mapping.
Modelling choices (what is a layer) follow the zoo (``docs/workloads.md``); in addition,
RoPE on q and k is a two-operand elementwise op (x and the sin/cos table) and the SwiGLU
product ``silu(gate) * up`` is a two-operand elementwise op, both counted as
:class:`~nmsat.workloads.layers.OpKind` ``ADD`` (one pass over two inputs on the vector
lanes); SiLU itself is fused into the gate projection's output path like GELU and ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

from nmsat.types import _Choice
from nmsat.workloads.layers import Matmul, OpKind, Workload
from nmsat.workloads.zoo import _T, ZooModel, _Builder  # the zoo's graph builder

__all__ = ["DEFAULT_CONTEXT", "GPT2_SMALL", "LLAMA_7B", "PRESETS", "STORIES_260K", "DecoderSpec",
           "LlmPhase", "Mlp", "build", "default_context", "is_llm", "kv_cache_layers",
           "layer_names", "spec", "workload", "zoo_factory"]

_ADD = OpKind.ADD


class LlmPhase(_Choice):
    """Serving phase of a decoder."""

    PREFILL = "prefill"
    DECODE = "decode"


class Mlp(_Choice):
    GELU = "gelu"  # fc1 -> GELU -> fc2 (GPT-2)
    SWIGLU = "swiglu"  # down(silu(gate(x)) * up(x)) (Llama)


@dataclass(frozen=True)
class DecoderSpec:
    """Shape of a decoder-only transformer.

    Parameters
    ----------
    name
        Registry name.
    hidden, layers, heads, kv_heads, ffn, vocab
        Hidden size d, decoder layers, query heads, key/value heads (``kv_heads`` divides
        ``heads``; fewer KV heads is grouped-query attention), FFN inner size, vocabulary.
    max_positions
        Longest sequence (prompt plus generated tokens) the model supports.
    mlp
        ``gelu`` (two projections) or ``swiglu`` (gate, up and down projections).
    rms_norm
        RMSNorm (one scale per feature) instead of LayerNorm (scale and shift).
    tied_head
        The LM head shares the token embedding (its parameters are counted once).
    bias
        Projections carry biases (GPT-2) or not (Llama).
    hf_names
        ``gpt2`` or ``llama``: Hugging Face's layers and names for that family
        (:func:`layer_names`); ``gpt2`` computes q, k and v in one fused projection
        (``attn.c_attn``, :attr:`fused_qkv`), ``llama`` in three.
    """

    name: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    ffn: int
    vocab: int
    max_positions: int
    mlp: Mlp = Mlp.GELU
    rms_norm: bool = False
    tied_head: bool = False
    bias: bool = True
    hf_names: str = "gpt2"

    def __post_init__(self) -> None:
        object.__setattr__(self, "mlp", Mlp.parse(self.mlp))
        for f in ("hidden", "layers", "heads", "kv_heads", "ffn", "vocab", "max_positions"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"DecoderSpec.{f} must be a positive integer, not {v!r}")
        if self.hidden % self.heads:
            raise ValueError(f"DecoderSpec.hidden ({self.hidden}) must be a multiple of heads "
                             f"({self.heads})")
        if self.heads % self.kv_heads:
            raise ValueError(f"DecoderSpec.kv_heads must divide heads ({self.heads}), "
                             f"not {self.kv_heads}")
        if self.hf_names not in ("gpt2", "llama"):
            raise ValueError(f"DecoderSpec.hf_names must be gpt2 or llama, "
                             f"not {self.hf_names!r}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def group(self) -> int:
        """Query heads per KV head."""
        return self.heads // self.kv_heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    @property
    def fused_qkv(self) -> bool:
        """q, k and v come from one projection of width ``hidden + 2 kv_dim`` whose output
        is split (Hugging Face's ``GPT2Attention.c_attn``), not from three (Llama)."""
        return self.hf_names == "gpt2"

    def kv_cache_bytes(self, kv_len: int, batch: int, elem_bytes: int) -> int:
        """Bytes of the whole KV cache (K and V, every layer) for ``batch`` sequences."""
        return 2 * self.layers * batch * kv_len * self.kv_dim * elem_bytes


GPT2_SMALL = DecoderSpec("gpt2_small", hidden=768, layers=12, heads=12, kv_heads=12, ffn=3072,
                         vocab=50257, max_positions=1024, mlp=Mlp.GELU, tied_head=True)
"""GPT-2 small (Hugging Face ``gpt2``): 124,439,808 parameters, the zoo's ``gpt2_small``."""

LLAMA_7B = DecoderSpec("llama_7b", hidden=4096, layers=32, heads=32, kv_heads=32, ffn=11008,
                       vocab=32000, max_positions=4096, mlp=Mlp.SWIGLU, rms_norm=True,
                       bias=False, hf_names="llama")
"""A 7B-shaped Llama (Llama-2-7B's shapes): 6,738,415,616 parameters."""

STORIES_260K = DecoderSpec("stories260k", hidden=64, layers=5, heads=8, kv_heads=4, ffn=172,
                           vocab=512, max_positions=512, mlp=Mlp.SWIGLU, rms_norm=True,
                           tied_head=True, bias=False, hf_names="llama")
"""The smallest Llama of Karpathy's llama2.c (``stories260K`` in Hugging Face
``karpathy/tinyllamas``, trained on TinyStories): dim 64, 5 layers, 8 heads, 4 KV heads
(grouped-query attention, head dim 8), SwiGLU FFN 172 (llama2.c's ``multiple_of = 4``
rounding of 2/3 x 4 x 64), a 512-token vocabulary, 512 positions, embedding and output
weights tied; 260,032 parameters. Small enough that its layers run on the RTL
(``nmsat rtl run stories260k --mode inference``). Registered in the zoo (its prefill
graph, 512 tokens), like ``llama_7b``."""

PRESETS: dict[str, DecoderSpec] = {s.name: s for s in (GPT2_SMALL, LLAMA_7B, STORIES_260K)}

DEFAULT_CONTEXT = 1024
"""Default context of a serving step: the prompt length of a prefill and the KV-cache
positions of a decode step (``--seq-len`` / ``--kv-len`` unset), capped at the model's
positions. 1024 is GPT-2's whole context and the prompt length of the zoo's
``gpt2_small``, so prefill and decode defaults describe one request: a 1,024-token
prompt, then the next token against its 1,024 cached positions."""


def default_context(s: DecoderSpec) -> int:
    """``min(DEFAULT_CONTEXT, s.max_positions)``: prefill length and decode KV length
    when none is given (gpt2_small and llama_7b 1024, stories260k 512)."""
    return min(DEFAULT_CONTEXT, s.max_positions)


def spec(name: str) -> DecoderSpec:
    """The decoder preset ``name`` (``gpt2_small``, ``llama_7b``, ``stories260k``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"{name!r} is not an LLM workload (choose from "
                         f"{', '.join(PRESETS)})") from None


def is_llm(name: str) -> bool:
    return name in PRESETS


# --------------------------------------------------------------------------- building


class _DecoderBuilder(_Builder):
    def rms_norm(self, x: _T, name: str) -> _T:
        """RMSNorm: one scale per feature (the zoo's ``norm`` counts LayerNorm's two)."""
        out = self.norm(x, name)
        self.params -= x.shape[-1]
        return out


def layer_names(s: DecoderSpec, i: int) -> dict[str, str]:
    """Names of decoder layer ``i``'s layers by role: ``qkv`` (the fused projection,
    GPT-2) or ``q``, ``k``, ``v`` (Llama), ``o``, ``up``, ``down`` (and ``gate``, Llama)
    and the norms ``ln_1``, ``ln_2`` carry Hugging Face's module names; the residual adds
    ``add_1``, ``add_2``, the activation ``act`` (and SwiGLU's ``mul``) are named in the
    same style, and ``attn`` prefixes the attention products (``scores``, ``softmax``,
    ``context``)."""
    if s.hf_names == "llama":
        p = f"model.layers.{i}"
        a = f"{p}.self_attn"
        return {"ln_1": f"{p}.input_layernorm", "q": f"{a}.q_proj", "k": f"{a}.k_proj",
                "v": f"{a}.v_proj", "o": f"{a}.o_proj", "attn": a,
                "ln_2": f"{p}.post_attention_layernorm", "gate": f"{p}.mlp.gate_proj",
                "up": f"{p}.mlp.up_proj", "down": f"{p}.mlp.down_proj", "act": f"{p}.mlp.act",
                "mul": f"{p}.mlp.mul", "add_1": f"{p}.add_1", "add_2": f"{p}.add_2"}
    p = f"h.{i}"
    a = f"{p}.attn"
    return {"ln_1": f"{p}.ln_1", "qkv": f"{a}.c_attn", "o": f"{a}.c_proj", "attn": a,
            "ln_2": f"{p}.ln_2", "up": f"{p}.mlp.c_fc", "act": f"{p}.mlp.act",
            "down": f"{p}.mlp.c_proj", "add_1": f"{p}.add_1", "add_2": f"{p}.add_2"}


def _qkv(b: _DecoderBuilder, s: DecoderSpec, n: dict[str, str], y: _T) -> tuple[_T, _T, _T]:
    """q ``[tokens, d]``, k and v ``[tokens, kv_dim]`` from the normed input ``y``: one
    fused projection sliced three ways (GPT-2's ``c_attn``; the slices are views of its
    output, not layers), or three projections (Llama)."""
    tokens = y.shape[0]
    if s.fused_qkv:
        qkv = b.linear(y, n["qkv"], s.hidden + 2 * s.kv_dim, bias=s.bias)
        return (b.gather(qkv, (tokens, s.hidden)), b.gather(qkv, (tokens, s.kv_dim)),
                b.gather(qkv, (tokens, s.kv_dim)))
    return (b.linear(y, n["q"], s.hidden, bias=s.bias),
            b.linear(y, n["k"], s.kv_dim, bias=s.bias),
            b.linear(y, n["v"], s.kv_dim, bias=s.bias))


def build(s: DecoderSpec, phase: LlmPhase | str, seq_len: int = 1,
          kv_len: int | None = None) -> ZooModel:
    """The per-sequence layer graph of ``s`` in ``phase``.

    Parameters
    ----------
    phase
        ``prefill``: ``seq_len`` prompt tokens. ``decode``: one token against ``kv_len``
        cached positions (``seq_len`` is ignored there and must be left at 1).
    kv_len
        Decode only: KV-cache positions attended, 1 .. ``max_positions``.

    Raises
    ------
    ValueError
        A length outside 1 .. ``max_positions`` or given for the wrong phase.
    """
    phase = LlmPhase.parse(phase)
    if phase is LlmPhase.PREFILL:
        if kv_len is not None:
            raise ValueError(f"kv_len is for the decode phase (prefill got kv_len={kv_len})")
        _check_len("seq_len", seq_len, s)
        tokens, keys = seq_len, seq_len
    else:
        if seq_len != 1:
            raise ValueError(f"decode runs one token per sequence; give the cache length "
                             f"as kv_len, not seq_len={seq_len}")
        if kv_len is None:
            raise ValueError("the decode phase needs kv_len (KV-cache positions)")
        _check_len("kv_len", kv_len, s)
        tokens, keys = 1, kv_len
    d, hd, g, kvh = s.hidden, s.head_dim, s.group, s.kv_heads
    b = _DecoderBuilder((tokens,))
    norm = b.rms_norm if s.rms_norm else b.norm
    positions = 0 if s.hf_names == "llama" else s.max_positions  # RoPE has no table params
    x = b.gather(b.input(), (tokens, d), params=(s.vocab + positions) * d)
    if positions:
        x = b.embed_sum(x, "embeddings.add", (tokens, d))
    for i in range(s.layers):
        n = layer_names(s, i)
        q, k, v = _qkv(b, s, n, norm(x, n["ln_1"]))
        if s.hf_names == "llama":
            q = b._elementwise(_ADD, f"{n['attn']}.rope_q", q.shape, q)
            k = b._elementwise(_ADD, f"{n['attn']}.rope_k", k.shape, k)
        # A KV head's g query heads are the rows of its score product.
        qs = b.reshape(q, (kvh, g * tokens, hd))
        if phase is LlmPhase.DECODE:  # the cache: earlier positions plus this step's k, v
            ks = b.gather(k, (kvh, hd, keys))
            vs = b.gather(v, (kvh, keys, hd))
        else:
            ks = b.reshape(k, (kvh, hd, keys))
            vs = b.reshape(v, (kvh, keys, hd))
        sc = b.matmul(qs, ks, f"{n['attn']}.scores", m=g * tokens, n=keys, k=hd, heads=kvh)
        pr = b.softmax(sc, f"{n['attn']}.softmax")
        ctx = b.matmul(pr, vs, f"{n['attn']}.context", m=g * tokens, n=hd, k=keys, heads=kvh)
        y = b.linear(b.reshape(ctx, (tokens, d)), n["o"], d, bias=s.bias)
        x = b.add(y, x, n["add_1"])
        y = norm(x, n["ln_2"])
        if s.mlp is Mlp.SWIGLU:
            gate = b.act(b.linear(y, n["gate"], s.ffn, bias=s.bias), n["act"])
            up = b.linear(y, n["up"], s.ffn, bias=s.bias)
            y = b._elementwise(_ADD, n["mul"], gate.shape, gate, up)
        else:
            y = b.act(b.linear(y, n["up"], s.ffn, bias=s.bias), n["act"])
        y = b.linear(y, n["down"], d, bias=s.bias)
        x = b.add(y, x, n["add_2"])
    x = norm(x, "model.norm" if s.hf_names == "llama" else "ln_f")
    b.linear(x, "lm_head", s.vocab, bias=False, params=not s.tied_head)
    what = (f"prefill of {seq_len} tokens" if phase is LlmPhase.PREFILL
            else f"decode step against a {kv_len}-position KV cache")
    return b.build(s.name if phase is LlmPhase.PREFILL else f"{s.name}.decode",
                   f"{s.name} {what}")



def _check_len(what: str, v: int, s: DecoderSpec) -> None:
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{what} must be a positive integer, not {v!r}")
    if v > s.max_positions:
        raise ValueError(f"{what} {v} exceeds {s.name}'s {s.max_positions} positions")


def workload(name: str | DecoderSpec, phase: LlmPhase | str, batch: int = 1,
             seq_len: int | None = None, kv_len: int | None = None) -> Workload:
    """An LLM serving step as a :class:`Workload` of ``batch`` sequences.

    ``seq_len`` (prefill) defaults to 1,024 capped at the model's positions; ``kv_len``
    (decode) is required.
    """
    s = spec(name) if isinstance(name, str) else name
    phase = LlmPhase.parse(phase)
    if phase is LlmPhase.PREFILL:
        m = build(s, phase, min(1024, s.max_positions) if seq_len is None else seq_len)
    else:
        if seq_len is not None:
            raise ValueError(f"decode runs one token per sequence; give the cache length "
                             f"as kv_len, not seq_len={seq_len}")
        m = build(s, phase, 1, kv_len)
    return m.workload(batch)


def kv_cache_layers(w: Workload) -> tuple[str, ...]:
    """Names of the layers whose B operand is the KV cache (decode score and context
    products)."""
    if not w.name.endswith(".decode"):
        return ()
    return tuple(layer.name for layer in w.layers if isinstance(layer, Matmul))


def zoo_factory(name: str):
    """A zoo registry factory building the prefill graph of preset ``name``."""
    s = spec(name)

    def factory(seq_len: int) -> ZooModel:
        return build(s, LlmPhase.PREFILL, seq_len)

    factory.__doc__ = f"{name}: prefill graph (the whole prompt)."
    return factory
