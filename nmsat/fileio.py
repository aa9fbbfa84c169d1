"""Safe file input and output: every file nmsat reads or writes goes through here.

Writing
    Outputs are **regular files only**. A destination that exists as a folder, a device
    node, a FIFO or a socket is refused with one line naming it; nothing is opened or
    replaced. A file is written to a temporary file in its own folder, flushed, then
    renamed over the destination (``os.replace``), so readers see the old file or the
    whole new one and an error leaves the old one untouched.

    **Symbolic links are followed**: ``--json out.json`` where ``out.json`` is a link
    writes the link's final target (atomically, in the target's folder) and leaves the
    link in place; the target must itself be a regular file or not exist yet. A dangling
    link whose target folder does not exist is refused.

    Commands call :func:`check_output_file` / :func:`check_output_dir` on every destination
    before any expensive work; :func:`atomic_write_many` checks again immediately before
    each rename, so a device node that appears in between is still never replaced.

Reading
    Configs, specs, CSVs, results and traces are read only from regular files (a FIFO or
    ``/dev/zero`` is refused without reading a byte), up to a stated size per kind
    (:data:`LIMITS`). Structured text (TOML, YAML, JSON) is parsed with duplicate keys
    refused, nesting bounded to :data:`MAX_NESTING` levels, YAML mapping keys required to
    be strings and YAML alias expansion bounded to :data:`MAX_NODES` values, so no input
    can make a parser recurse without bound or expand into gigabytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import NmsatError, OutputError

__all__ = ["LIMITS", "MAX_NESTING", "MAX_NODES", "InputError", "atomic_write_bytes",
           "atomic_write_many", "atomic_write_text", "check_output_dir", "check_output_file",
           "check_shape", "file_lock", "parse_structured", "read_bytes", "read_text"]

LIMITS: dict[str, int] = {
    "config": 1 << 20,        # an accelerator config is a few KiB
    "spec": 1 << 20,          # a sweep spec likewise
    "csv": 64 << 20,          # a SCALE-Sim topology: 100,000 layers at ~100 B a line fit
    "result": 1 << 30,        # `simulate --json` with its event timeline (GPT-2: ~100 MiB)
    "trace": 1 << 30,         # a training trace container (see workloads/trace_read.py)
    "table": 16 << 20,        # the synthesis calibration table and similar JSON
}
"""Largest file, in bytes, read for each kind of input. A larger file is refused before
reading it; the limits are far above any file nmsat itself writes for its zoo."""

MAX_NESTING = 64
"""Deepest nesting of tables/lists accepted in TOML, YAML and JSON (configs need 3)."""

MAX_NODES = 1_000_000
"""Most values (counting every use of a YAML alias) a structured file may expand into."""


class InputError(NmsatError, ValueError):
    """An input file cannot be read or parsed; the message names the file and the problem."""


# --------------------------------------------------------------------------- reading


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_bytes(path: str | Path, what: str, limit: int) -> bytes:
    """The bytes of the regular file ``path``; refuses anything else or more than ``limit``.

    ``what`` names the input in messages ("config file", "trace"). The file is opened
    non-blocking, so a FIFO is refused at once instead of waiting for a writer.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(f"{what} not found: {p}") from None
    except NotADirectoryError:
        raise InputError(f"{what} not found: {p} (a parent is a file, not a folder)") from None
    except OSError as e:
        raise InputError(f"cannot read {what} {p}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(f"{what} {p} is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise InputError(f"{what} {p} is {st.st_size:,} bytes, over the limit of "
                             f"{limit:,}")
        chunks, got = [], 0
        while got <= limit:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            except OSError as e:
                raise InputError(f"cannot read {what} {p}: {e.strerror or e}") from None
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:  # the file grew while we read it
            raise InputError(f"{what} {p} is over the limit of {limit:,} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_text(path: str | Path, what: str, limit: int) -> str:
    """:func:`read_bytes` decoded as UTF-8 (a BOM is dropped); one line on bad bytes."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {what} {path}: not UTF-8 text ({e.reason} at byte "
                         f"{e.start})") from None


def _json_unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InputError(f"duplicate key {k!r} (values {_short(out[k])} and {_short(v)})")
        out[k] = v
    return out


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _toml_duplicate(text: str, err: Exception) -> str | None:
    """Name the key of a TOML duplicate-key error (tomllib only gives a line number)."""
    msg = str(err)
    where = re.search(r"\(at line (\d+), column \d+\)", msg)
    if not where or not msg.startswith(("Cannot overwrite a value", "Cannot declare")):
        return None
    lines = text.splitlines()
    lineno = int(where.group(1))
    if lineno > len(lines):
        return None
    line = lines[lineno - 1].strip()
    table = ""
    for prev in lines[: lineno - 1]:
        header = re.match(r"\s*\[+\s*([^\]]+?)\s*\]+", prev)
        if header:
            table = header.group(1).replace('"', "").replace("'", "").replace(" ", "")
    header = re.match(r"\[+\s*([^\]]+?)\s*\]+", line)
    if header:
        key = header.group(1)
    else:
        key, _, _ = line.partition("=")
        key = key.strip().replace('"', "").replace("'", "").replace(" ", "")
        key = f"{table}.{key}" if table else key
    return f"duplicate key {key!r} (line {lineno}: {line[:80]})"


def _load_yaml(text: str) -> Any:
    """YAML (safe subset) with duplicate keys named by dotted path and non-string keys
    refused."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise InputError(f"key {key!r} is not a string "
                                 f"(line {key_node.start_mark.line + 1})")
            if key in seen:
                raise InputError(f"duplicate key {key!r} (line {key_node.start_mark.line + 1})")
            seen[key] = loader.construct_object(value_node, deep=deep)
        return seen

    def check_paths(root: Any) -> None:
        """Name a duplicate by its dotted path (the constructor only sees the key)."""
        stack, seen_nodes = [(root, "")], set()
        while stack:
            node, prefix = stack.pop()
            if id(node) in seen_nodes:  # aliases may repeat (or nest) a node
                continue
            seen_nodes.add(id(node))
            if isinstance(node, yaml.MappingNode):
                keys: set[tuple[str, str]] = set()
                for key_node, value_node in node.value:
                    if isinstance(key_node, yaml.ScalarNode):
                        if (key_node.tag, key_node.value) in keys:
                            raise InputError(f"duplicate key '{prefix}{key_node.value}' "
                                             f"(line {key_node.start_mark.line + 1})")
                        keys.add((key_node.tag, key_node.value))
                    stack.append((value_node, f"{prefix}{getattr(key_node, 'value', '?')}."))
            elif isinstance(node, yaml.SequenceNode):
                stack.extend((item, prefix) for item in node.value)

    Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    try:
        check_paths(yaml.compose(text, Loader=yaml.SafeLoader))
        return yaml.load(text, Loader=Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        if getattr(e, "problem", None) and mark is not None:
            what = f"{e.problem} (line {mark.line + 1}, column {mark.column + 1})"
        else:
            what = " ".join(str(e).split())
        raise InputError(f"invalid YAML: {what[:200]}") from None


_YAML_QUOTED = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\n]|'')*'|#[^\n]*")
_YAML_BRACKETS = re.compile(r"[\[\]{}]")
_YAML_INDENT = re.compile(r"^([ -]*)\S", re.M)


def _yaml_depth(text: str) -> None:
    """Refuse YAML nested deeper than :data:`MAX_NESTING` before PyYAML parses it (its
    scanner slows down quadratically on deep flow collections: 5,000 ``[`` took seconds).
    Counts flow brackets outside quotes and comments, and block levels as indentation
    steps plus ``- `` prefixes; a bound, so it may only over-count for odd layouts."""
    bare = _YAML_QUOTED.sub("", text)
    depth = 0
    for m in _YAML_BRACKETS.finditer(bare):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_NESTING:
            raise InputError(f"nesting is deeper than {MAX_NESTING} levels")
    stack = [-1]
    for m in _YAML_INDENT.finditer(bare):
        lead = m.group(1)
        indent = len(lead) - len(lead.lstrip(" "))
        while stack[-1] >= indent and len(stack) > 1:
            stack.pop()
        stack.append(indent)
        if len(stack) - 1 + lead.count("-") > MAX_NESTING:
            raise InputError(f"nesting is deeper than {MAX_NESTING} levels")


def check_shape(data: Any) -> None:
    """Refuse data nested deeper than :data:`MAX_NESTING`, holding a cycle (a recursive
    YAML alias), or expanding (aliases counted at every use) to over :data:`MAX_NODES`
    values. Iterative and memoised, so it is linear in the distinct containers."""
    height: dict[int, int] = {}
    size: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(data, False)]
    while stack:
        obj, done = stack.pop()
        if not isinstance(obj, (dict, list)):
            continue
        key = id(obj)
        children = list(obj.values()) if isinstance(obj, dict) else obj
        if done:
            on_path.discard(key)
            kids = [c for c in children if isinstance(c, (dict, list))]
            height[key] = 1 + max((height[id(c)] for c in kids), default=0)
            size[key] = 1 + len(children) + sum(size[id(c)] for c in kids)
            if height[key] > MAX_NESTING:
                raise InputError(f"nesting is deeper than {MAX_NESTING} levels")
            if size[key] > MAX_NODES:
                raise InputError(f"more than {MAX_NODES:,} values (aliases counted at "
                                 f"every use)")
            continue
        if key in height:
            continue
        if key in on_path:
            raise InputError("a value contains itself (recursive alias)")
        if len(on_path) >= MAX_NESTING:
            raise InputError(f"nesting is deeper than {MAX_NESTING} levels")
        on_path.add(key)
        stack.append((obj, True))
        stack.extend((c, False) for c in children)


def parse_structured(text: str, fmt: str) -> Any:
    """Parse ``text`` as ``toml``, ``yaml`` or ``json`` within the bounds above.

    Raises :class:`InputError` with one line (duplicate key, syntax error with its line,
    nesting too deep, non-string YAML key).
    """
    try:
        if fmt == "toml":
            try:
                data = tomllib.loads(text)  # TOML itself forbids duplicate keys
            except tomllib.TOMLDecodeError as e:
                raise InputError(_toml_duplicate(text, e) or f"invalid TOML: {e}") from None
        elif fmt == "yaml":
            _yaml_depth(text)
            data = _load_yaml(text)
        elif fmt == "json":
            try:
                data = json.loads(text, object_pairs_hook=_json_unique)
            except json.JSONDecodeError as e:
                raise InputError(f"invalid JSON: {e}") from None
        else:
            raise InputError(f"unknown format {fmt!r} (choose from toml, yaml, json)")
    except RecursionError:
        raise InputError(f"nesting is deeper than {MAX_NESTING} levels") from None
    check_shape(data)
    return data


# --------------------------------------------------------------------------- locking


@contextlib.contextmanager
def file_lock(path: str | Path, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock (``flock``) on ``path`` for the ``with`` block, waiting while
    another process holds it: exclusive, or ``shared`` (any number of shared holders at
    once, none while an exclusive one holds it). The file is created if missing and left
    in place (removing it could hand two processes a lock on different files). The kernel
    drops the lock when its holder dies, so a killed holder never blocks the next one.
    Used around shared build folders (the RTL simulation cache: one process builds, any
    number run the build)."""
    import fcntl

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


# --------------------------------------------------------------------------- writing


def _flag(flag: str | None) -> str:
    return f"{flag}: " if flag else ""


def _target(p: Path) -> Path:
    """The path a write to ``p`` replaces: symbolic links followed to their final target."""
    return Path(os.path.realpath(p)) if os.path.islink(p) else p


def check_output_file(path: str | Path, flag: str | None = None) -> Path:
    """Refuse now a file destination that writing would refuse later.

    The destination must be a regular file or not exist, and the nearest existing folder
    above it must be a writable folder. Returns the path unchanged. ``flag`` (``--json``)
    prefixes the message.
    """
    p = Path(path)
    t = _target(p)
    try:
        st = os.stat(t)
    except (FileNotFoundError, NotADirectoryError):  # _check_parent names the problem
        st = None
    except OSError as e:
        raise OutputError(f"{_flag(flag)}cannot write {p}: {e.strerror or e}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{_flag(flag)}cannot write {p}: it is {_kind(st.st_mode)}; nmsat "
                          f"writes regular files only")
    _check_parent(t.parent, p, flag)
    return p


def check_output_dir(path: str | Path, flag: str | None = None) -> Path:
    """Refuse now an output folder that cannot be made or written: it must be a folder
    (or not exist, with a writable folder above it)."""
    p = Path(path)
    if p.exists():
        if not p.is_dir():
            raise OutputError(f"{_flag(flag)}cannot write into {p}: it exists and is not a "
                              f"folder")
        _check_parent(p, p, flag)
        return p
    _check_parent(Path(os.path.realpath(p)).parent, p, flag)
    return p


def _check_parent(parent: Path, asked: Path, flag: str | None) -> None:
    anc = parent
    while not anc.exists():
        if anc.is_symlink() or anc == anc.parent:
            raise OutputError(f"{_flag(flag)}cannot write {asked}: {anc} does not exist")
        anc = anc.parent
    if not anc.is_dir():
        raise OutputError(f"{_flag(flag)}cannot write {asked}: {anc} is not a folder")
    try:  # os.access says yes to root even on a read-only file system: really try
        with tempfile.TemporaryFile(dir=anc):
            pass
    except OSError as e:
        raise OutputError(f"{_flag(flag)}cannot write {asked}: {anc} is not writable "
                          f"({e.strerror or e})") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one.

    The data goes to a temporary file in the same folder, is flushed to disk, then renamed
    over ``path``; on any error the temporary file is removed and ``path`` is untouched.
    """
    atomic_write_many([(path, data)])


def atomic_write_text(path: str | Path, text: str) -> None:
    """Like :func:`atomic_write_bytes`, for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_many(files: list[tuple[str | Path, bytes]]) -> None:
    """Write several files all or nothing: every file is first staged completely as a
    temporary file beside its target, and only then are they renamed into place. If any
    staging fails, every temporary file is removed and no target is touched. A target that
    is not a regular file when its rename comes is refused (see the module docstring)."""
    staged: list[tuple[str, Path, Path]] = []
    try:
        for path, data in files:
            check_output_file(path)
            t = _target(Path(path))
            staged.append((_stage(Path(path), t, data), Path(path), t))
        for _, p, _t in staged:
            check_output_file(p)
        for tmp, _, t in staged:
            os.replace(tmp, t)
    except BaseException:
        for tmp, _, _ in staged:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise


def _stage(p: Path, t: Path, data: bytes) -> str:
    """A flushed temporary copy of ``data`` in ``t``'s folder with ``t``'s future mode."""
    try:
        t.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{t.name}.", suffix=".tmp", dir=t.parent)
    except OSError as e:  # name the file asked for, not the temporary one
        why = (f"{t.parent} is not a folder" if t.parent.exists() and not t.parent.is_dir()
               else e.strerror or str(e))
        raise OutputError(f"cannot write {p}: {why}") from None
    try:  # keep an existing file's permissions; a new file gets the usual 0o666 & ~umask
        mode = t.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    try:
        os.fchmod(fd, mode)  # mkstemp creates 0o600, which would otherwise replace ``path``
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
