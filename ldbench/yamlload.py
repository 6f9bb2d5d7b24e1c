"""YAML for suites and --set values, bounded: the text must be UTF-8 and at most MAX_BYTES, nesting at
most MAX_DEPTH levels, and the document with every alias expanded at most MAX_NODES nodes. PyYAML
shares an anchored node between its aliases, so a few hundred bytes of nested aliases (a "billion laughs"
document) load instantly and then blow up whatever walks them; the expanded size is computed on the
node graph before anything is constructed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ldbench.errors import UserError

MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_NODES = 100_000


class _Limit(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that stops composing past MAX_DEPTH levels (before Python's recursion limit)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expanded(root: yaml.Node) -> None:
    """Expanded node count and depth of the graph (aliases counted as copies), without recursion."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            on_path.discard(key)
            if size[key] > MAX_NODES:
                raise _Limit(f"more than {MAX_NODES} values once its aliases are expanded")
            if depth[key] > MAX_DEPTH:
                raise _Limit(f"nested more than {MAX_DEPTH} levels deep once its aliases are expanded")
            continue
        if key in size:
            continue
        if key in on_path:
            raise _Limit("an alias refers to a node that contains it (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)


def load_yaml_text(text: str, where: str, what: str = "value is not valid YAML") -> Any:
    """Parse one YAML document within the bounds; any problem is a UserError naming `where`."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise UserError(f"{where}: larger than {MAX_BYTES >> 20} MiB; a suite is a short YAML file")
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader already refuses control characters
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded(node)
        return loader.construct_document(node)
    except _Limit as exc:
        raise UserError(f"{where}: refused: the YAML is {exc}; write the values out plainly") from None
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{where}: {what} ({first})") from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a timestamp out of range
        raise UserError(f"{where}: {what} ({type(exc).__name__}: {str(exc)[:120]})") from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml_file(path: Path) -> Any:
    """A YAML file, read as UTF-8 text (a binary or non-UTF-8 file is a UserError)."""
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"{path}: larger than {MAX_BYTES >> 20} MiB; a suite is a short YAML file")
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not a UTF-8 text file (byte {exc.start}); pass a suite .yaml file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read suite YAML ({exc.strerror or exc})") from None
    return load_yaml_text(text, f"{path}", "cannot read suite YAML")
