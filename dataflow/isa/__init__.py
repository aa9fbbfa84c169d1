"""The tile-program instruction set: what the dataflow compiler emits, and what both the
simulator and the RTL tile controller execute (``docs/isa.md`` is the prose version).

A :class:`Program` is a tensor table, a layer table and a flat list of instructions.
Instructions are frozen dataclasses; a program serialises to JSON (:meth:`Program.to_json`)
and to a fixed-width binary form (:meth:`Program.to_bytes`) whose field widths are defined
once, in :data:`ENCODING` and :data:`TENSOR_ENCODING`. The RTL turns those tables into
``amaranth.lib.data`` layouts; nothing here imports Amaranth.

Execution model (normative, see ``docs/isa.md``)
    The controller dispatches instructions in program order to five units: the load DMA
    (``LOAD``), the tensor engine (``COMPUTE``, ``RELEASE`` of operand halves), the store DMA
    (``STORE``), the SORE (``SORE``) and the weight-update/vector engine (``WEIGHT_UPDATE``,
    ``VECTOR``). Each unit runs its instructions in order. Buffers synchronise the first
    three units: each of the ACT, WGT and OUT buffers is a ring of two halves.

    * ``LOAD`` waits for a free half of its buffer, fills it, and appends it to the ring.
    * ``COMPUTE`` reads the oldest filled ACT and WGT halves (waiting until they are
      filled), accumulates ``C += A @ B`` (:func:`nmsat.reference.engine_gemm` with
      ``acc`` = the OUT half's contents) into the current OUT half, then frees the ACT /
      WGT half if ``pop_a`` / ``pop_b`` is set.
    * ``RELEASE`` frees the oldest filled half of a buffer without computing (a weight
      block kept resident over a loop is released after it).
    * ``STORE`` waits for the computes before it, writes the current OUT half to DRAM,
      clears it (it reads as +0 again) and makes the other half current; a COMPUTE that
      needs that other half waits until its previous STORE has finished.
    * ``BARRIER`` stops dispatch until every instruction dispatched earlier to the named
      units has completed (data dependencies through DRAM, and SORE results).
    * ``LOOP count, body`` runs the next ``body`` instructions ``count`` times. Loops nest
      up to :data:`MAX_LOOP_DEPTH`; ``LOAD``/``STORE`` tile coordinates step with the
      iteration indices of the enclosing loops (``row_steps``/``col_steps``, one step per
      depth), so the program's size never depends on the batch size.
"""

from .codec import decode, decode_tensor, encode, encode_tensor
from .encoding import (
    ENCODING,
    INSTR_BITS,
    ISA_VERSION,
    MAX_LOOP_DEPTH,
    OPCODE_BITS,
    TENSOR_BITS,
    TENSOR_ENCODING,
    Buffer,
    ElemType,
    IsaError,
    Opcode,
    SoreView,
    Transform,
    Unit,
)
from .instructions import (
    INSTRUCTION_TYPES,
    UNIT_OF,
    Barrier,
    Compute,
    ConvView,
    Instr,
    Load,
    Loop,
    Release,
    Sore,
    Store,
    Tensor,
    Vector,
    WeightUpdate,
    region_bytes,
)
from .program import Program

__all__ = [
    "ENCODING", "INSTRUCTION_TYPES", "INSTR_BITS", "ISA_VERSION", "MAX_LOOP_DEPTH",
    "OPCODE_BITS", "TENSOR_BITS", "TENSOR_ENCODING", "UNIT_OF", "Barrier", "Buffer", "Compute",
    "ConvView", "ElemType", "Instr", "IsaError", "Load", "Loop", "Opcode", "Program", "Release",
    "Sore", "SoreView", "Store", "Tensor", "Transform", "Unit", "Vector", "WeightUpdate",
    "decode", "decode_tensor", "encode", "encode_tensor", "region_bytes",
]
