"""Reference interpreter of the tile program's execution model (``docs/isa.md``), for
checking the RTL tile controller (:mod:`nmsat.rtl.controller`).

Written from the ISA document alone, independent of the RTL: it walks the program (loops
unrolled, LOAD/STORE tiles resolved) and lists, per unit, the instructions in the order
that unit must run them, each with the events that must have happened before it may be
issued (its waits). :func:`check_trace` holds a cycle trace of a controller run (command
handshakes and completion pulses per unit) to that: same per-unit sequences, every wait
satisfied before its issue cycle, ``done`` after the last completion.

Events, counted from the start of the program: ``("filled", b)`` LOADs into buffer b
completed; ``("freed", b)`` halves of b freed (a COMPUTE with ``pop_a``/``pop_b`` or a
RELEASE of b completed); ``("done", u)`` instructions of unit u completed.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from nmsat.dataflow import isa

UNIT_NAMES = ("load", "engine", "store", "sore", "wu")
_UNIT = {isa.Load: "load", isa.Compute: "engine", isa.Release: "engine", isa.Store: "store",
         isa.Sore: "sore", isa.WeightUpdate: "wu", isa.Vector: "wu"}
_MASK = {"load": isa.Unit.LOAD, "engine": isa.Unit.ENGINE, "store": isa.Unit.STORE,
         "sore": isa.Unit.SORE, "wu": isa.Unit.WU}


@dataclass
class Issue:
    """One executed instruction as its unit receives it."""

    index: int  # position in the program
    instr: isa.Instr
    r0: int = 0
    c0: int = 0
    waits: list[tuple[tuple[str, str], int]] = field(default_factory=list)
    """(event, count): at least ``count`` such events before the issue cycle."""
    halves: dict[str, int] = field(default_factory=dict)
    """The ring halves it uses: a LOAD the one it fills (``"load"``), a STORE the OUT
    half it drains (``"out"``), an engine instruction its oldest filled ACT and WGT halves
    and its OUT half (``"act"``, ``"wgt"``, ``"out"``): the rings are FIFOs, so the n-th
    LOAD into a buffer fills half n mod halves, the n-th pop frees it, and COMPUTEs after
    s STOREs accumulate into OUT half s mod halves."""

    def frees(self) -> tuple[str, ...]:
        """Buffers whose oldest half this instruction frees when it completes."""
        i = self.instr
        if isinstance(i, isa.Compute):
            return tuple(b for b, p in (("act", i.pop_a), ("wgt", i.pop_b)) if p)
        if isinstance(i, isa.Release):
            return (i.buffer.name.lower(),)
        return ()


def reference(program: isa.Program, halves: tuple[int, int, int]) -> dict[str, list[Issue]]:
    """Per unit, the instructions in order with their waits. ``halves``: ring sizes of
    ACT, WGT and OUT. Raises ``ValueError`` for a program that would wait forever (a wait
    on an event no earlier instruction produces)."""
    ring = {"act": halves[0], "wgt": halves[1]}
    out: dict[str, list[Issue]] = {u: [] for u in UNIT_NAMES}
    loads = {"act": 0, "wgt": 0}  # LOADs into each buffer so far
    pops = {"act": 0, "wgt": 0}  # halves popped by engine instructions so far
    barrier = {u: 0 for u in UNIT_NAMES}  # completions every later instruction waits for
    produced: dict[tuple[str, str], int] = defaultdict(int)

    def emit(i: int, ins: isa.Instr, idx: list[int]) -> None:
        if isinstance(ins, isa.Barrier):
            for u in UNIT_NAMES:
                if ins.units & _MASK[u]:
                    barrier[u] = len(out[u])
            return
        unit = _UNIT[type(ins)]
        iss = Issue(i, ins)
        w = iss.waits
        if isinstance(ins, (isa.Load, isa.Store)):
            iss.r0 = ins.row0 + sum(s * v for s, v in zip(ins.row_steps, idx))
            iss.c0 = ins.col0 + sum(s * v for s, v in zip(ins.col_steps, idx))
        if isinstance(ins, isa.Load):
            b = ins.buffer.name.lower()
            w.append((("freed", b), loads[b] - ring[b] + 1))
            iss.halves = {"load": loads[b] % ring[b]}
            loads[b] += 1
        elif isinstance(ins, isa.Compute):
            w += [(("filled", "act"), pops["act"] + 1), (("filled", "wgt"), pops["wgt"] + 1),
                  (("done", "store"), len(out["store"]) - halves[2] + 1)]
        elif isinstance(ins, isa.Release):
            w.append((("filled", ins.buffer.name.lower()), pops[ins.buffer.name.lower()] + 1))
        elif isinstance(ins, isa.Store):
            w.append((("done", "engine"), len(out["engine"])))
            iss.halves = {"out": len(out["store"]) % halves[2]}
        if isinstance(ins, (isa.Compute, isa.Release)):
            iss.halves = {"act": pops["act"] % ring["act"], "wgt": pops["wgt"] % ring["wgt"],
                          "out": len(out["store"]) % halves[2]}
        w += [(("done", u), n) for u, n in barrier.items()]
        iss.waits = [(e, n) for e, n in w if n > 0]
        for e, n in iss.waits:
            if produced[e] < n:
                raise ValueError(f"instruction {i} ({ins.OPCODE.name}) waits for {n} x {e}, "
                                 f"but only {produced[e]} happen before it: a deadlock")
        for b in iss.frees():
            pops[b] += 1
            produced[("freed", b)] += 1
        if isinstance(ins, isa.Load):
            produced[("filled", ins.buffer.name.lower())] += 1
        produced[("done", unit)] += 1
        out[unit].append(iss)

    def run(lo: int, hi: int, idx: list[int]) -> None:
        i = lo
        while i < hi:
            ins = program.instructions[i]
            if isinstance(ins, isa.Loop):
                for it in range(ins.count):
                    run(i + 1, i + 1 + ins.body, idx + [it])
                i += 1 + ins.body
            else:
                emit(i, ins, idx)
                i += 1

    run(0, len(program.instructions), [])
    return out


def check_trace(ref: dict[str, list[Issue]], issued: dict[str, list[tuple[int, object]]],
                done: dict[str, list[int]], finish: int | None, same) -> list[str]:
    """Problems of a controller run against :func:`reference` (empty: none).

    ``issued[u]``: (cycle, payload) of every command handshake of unit u; ``done[u]``:
    the cycles of u's completion pulses; ``finish``: the cycle ``done`` pulsed (None:
    never). ``same(issue, payload)`` says whether a payload is that instruction.
    """
    errs: list[str] = []
    events: dict[tuple[str, str], list[int]] = defaultdict(list)
    for u in UNIT_NAMES:
        want, got = ref[u], issued[u]
        if len(got) != len(want):
            errs.append(f"{u}: {len(got)} commands issued, the program has {len(want)}")
        for k, (iss, (_cyc, payload)) in enumerate(zip(want, got)):
            if not same(iss, payload):
                errs.append(f"{u} command {k}: got {payload}, want instruction {iss.index} "
                            f"{iss.instr} at ({iss.r0}, {iss.c0})")
        if len(done[u]) != len(want):
            errs.append(f"{u}: {len(done[u])} completions for {len(want)} commands")
        for iss, t in zip(want, done[u]):
            events[("done", u)].append(t)
            for b in iss.frees():
                events[("freed", b)].append(t)
            if isinstance(iss.instr, isa.Load):
                events[("filled", iss.instr.buffer.name.lower())].append(t)
    for u in UNIT_NAMES:
        for k, (iss, (cyc, _)) in enumerate(zip(ref[u], issued[u])):
            for e, n in iss.waits:
                # a completion pulse counts in its own cycle (rtl/controller.py)
                before = sum(1 for t in events[e] if t <= cyc)
                if before < n:
                    errs.append(f"{u} command {k} (instruction {iss.index} "
                                f"{iss.instr.OPCODE.name}) issued at cycle {cyc} after "
                                f"{before} x {e}, it must wait for {n}")
    last = max((t for ts in done.values() for t in ts), default=-1)
    if finish is None:
        errs.append("done never pulsed")
    elif finish < last:
        errs.append(f"done pulsed at cycle {finish}, before the last completion ({last})")
    return errs
