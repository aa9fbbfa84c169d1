"""Stream payloads <-> integers, with the layouts the RTL component declares."""

from __future__ import annotations

from amaranth.lib import data, wiring


def payload_layout(component: wiring.Component, port: str) -> data.Layout:
    """The ``amaranth.lib.data`` layout of stream ``port``'s payload."""
    return component.signature.members[port].signature.members["payload"].shape


def pack(layout: data.Layout, value) -> int:
    """The payload word (as the Verilog port sees it) of a nested dict/list ``value``."""
    return layout.const(value).as_bits()


def unpack(layout: data.Layout, word: int):
    """A read-only view of ``word`` (index it like the RTL payload)."""
    return layout.from_bits(int(word))
