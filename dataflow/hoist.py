"""Weight-load hoisting: a GEMM's first weight LOADs issued before the barrier that orders it
behind earlier work (``docs/isa.md``, "Weight-load hoisting").

A GEMM nest reads its weights (B) from a tensor no instruction of the program writes
(inference weights, pre-compressed). Its first LOADs into the WGT ring therefore need not
wait for the ``BARRIER`` (and the vector work) that orders the GEMM behind the previous
layer: :func:`take_first_loads` peels them out of the nest's loops, and the code generator
issues them right after the previous GEMM nest, so the next layer's weights stream while
the previous layer drains.

Peeling the first iteration of a loop at depth ``d`` leaves two pieces: the first iteration
without the loop (its transfers lose the step at depth ``d``; deeper loops move up one
depth) and the loop over the remaining ``count - 1`` iterations (its transfers start one
step further; a single remaining iteration is emitted without a loop). The instructions
executed, in order, are unchanged except that the taken LOADs run first.

Ring accounting (``docs/isa.md``, buffers): the n-th LOAD into a ring waits for the
(n - halves)-th free of it. At the end of every GEMM nest each WGT half it loaded has been
freed (by a COMPUTE with ``pop_b`` or a RELEASE), so the ring is empty where the taken
LOADs are issued; they are the nest's first WGT LOADs in execution order, at most
``halves`` of them, so the i-th finds at most i filled halves, and every later LOAD of the
nest finds exactly the loads and frees before it that it found without the hoist. So no
LOAD waits for a free that only a later instruction could give (no deadlock) and none
overwrites a half still being read; :func:`nmsat.dataflow.execute.execute` checks it
(a LOAD into a full ring is an error) and ``tests/test_weight_hoist.py`` checks it over
random shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from .isa import Barrier, Buffer, Compute, Instr, Load, Loop, Program, Release, Store

__all__ = ["hoisted_loads", "take_first_loads"]

# A loop tree: an instruction, or [count, [children]] for a LOOP.
_Node = Instr | list


def _tree(instrs: Sequence[Instr]) -> list[_Node]:
    """The flat instruction list (LOOP headers counting their bodies) as a tree."""
    out: list[_Node] = []
    i = 0
    while i < len(instrs):
        ins = instrs[i]
        if isinstance(ins, Loop):
            out.append([ins.count, _tree(instrs[i + 1:i + 1 + ins.body])])
            i += 1 + ins.body
        else:
            out.append(ins)
            i += 1
    return out


def _flat(nodes: list[_Node]) -> list[Instr]:
    out: list[Instr] = []
    for n in nodes:
        if isinstance(n, list):
            body = _flat(n[1])
            out.append(Loop(n[0], len(body)))
            out.extend(body)
        else:
            out.append(n)
    return out


def _map(nodes: list[_Node], fn: Callable[[Instr], Instr]) -> list[_Node]:
    """``fn`` applied to every LOAD and STORE of the tree (nested loops too)."""
    return [[n[0], _map(n[1], fn)] if isinstance(n, list)
            else fn(n) if isinstance(n, (Load, Store)) else n for n in nodes]


def _advance(d: int) -> Callable[[Instr], Instr]:
    """One iteration further along the loop at depth ``d``."""
    def fn(x):
        return dataclasses.replace(x, row0=x.row0 + x.row_steps[d],
                                   col0=x.col0 + x.col_steps[d])
    return fn


def _drop(d: int) -> Callable[[Instr], Instr]:
    """The loop at depth ``d`` removed: its step goes, deeper steps move up one depth."""
    def fn(x):
        rs, cs = x.row_steps, x.col_steps
        return dataclasses.replace(x, row_steps=rs[:d] + rs[d + 1:] + (0,),
                                   col_steps=cs[:d] + cs[d + 1:] + (0,))
    return fn


def _peel(count: int, body: list[_Node], d: int) -> tuple[list[_Node], list[_Node]]:
    """(first iteration, the remaining iterations) of the loop at depth ``d``."""
    first = _map(body, _drop(d))
    rest = _map(body, _advance(d))
    if count - 1 == 1:
        return first, _map(rest, _drop(d))
    return first, [[count - 1, rest]]


def _contains(nodes: list[_Node], pred: Callable[[Instr], bool]) -> bool:
    return any(_contains(n[1], pred) if isinstance(n, list) else pred(n) for n in nodes)


def _take(nodes: list[_Node], d: int, pred: Callable[[Instr], bool]
          ) -> tuple[list[_Node], Instr | None]:
    """The tree without the first executed instruction matching ``pred`` (peeling the
    loops around it), and that instruction (None: no match)."""
    for i, n in enumerate(nodes):
        if isinstance(n, list):
            if not _contains(n[1], pred):
                continue
            first, rest = _peel(n[0], n[1], d)
            first, hit = _take(first, d, pred)
            return nodes[:i] + first + rest + nodes[i + 1:], hit
        if pred(n):
            return nodes[:i] + nodes[i + 1:], n
    return nodes, None


def take_first_loads(nest: Sequence[Instr], buffer: Buffer, count: int
                     ) -> tuple[list[Load], list[Instr]]:
    """The first ``count`` LOADs into ``buffer`` of a loop nest (at loop depth 0) in
    execution order, resolved to the top level (no enclosing loop: their steps are 0),
    and the nest without them, its loops peeled so that it executes the same
    instructions in the same order otherwise."""
    def pred(x: Instr) -> bool:
        return isinstance(x, Load) and x.buffer is buffer

    tree = _tree(nest)
    taken: list[Load] = []
    for _ in range(count):
        tree, hit = _take(tree, 0, pred)
        if hit is None:
            break
        assert isinstance(hit, Load) and not any(hit.row_steps) and not any(hit.col_steps)
        taken.append(hit)
    return taken, _flat(tree)


def hoisted_loads(program: Program) -> list[Load]:
    """The WGT LOADs of ``program`` issued ahead of a BARRIER: top-level LOADs followed by a
    BARRIER before any engine instruction (a LOAD in a GEMM nest is followed by the
    COMPUTE that reads it first). Their DRAM time may fall in the previous layer's
    attributed time."""
    ins = program.instructions
    out: list[Load] = []
    depth_end: list[int] = []  # ends of the enclosing loop bodies
    for i, x in enumerate(ins):
        while depth_end and i >= depth_end[-1]:
            depth_end.pop()
        if isinstance(x, Loop):
            depth_end.append(i + 1 + x.body)
            continue
        if depth_end or not (isinstance(x, Load) and x.buffer is Buffer.WGT):
            continue
        for y in ins[i + 1:]:
            if isinstance(y, (Compute, Release, Loop)):
                break
            if isinstance(y, Barrier):
                out.append(x)
                break
    return out
