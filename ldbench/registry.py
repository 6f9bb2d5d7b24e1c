"""One generic registry for every extensible axis (datasets, methods, editors, extractors, ...)."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from ldbench.errors import UserError

T = TypeVar("T")


def reject_unknown(d: dict, valid: set[str], where: str) -> None:
    unknown = set(d) - valid
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                        f"valid: {', '.join(sorted(valid))}")


def build_options(cls, options: dict, where: str):
    """Instantiate an options dataclass, rejecting unknown keys with the valid ones listed."""
    if not isinstance(options, dict):
        raise UserError(f"{where}: options must be a mapping, got {options!r}")
    reject_unknown(options, {f.name for f in dataclasses.fields(cls)}, where)
    try:
        return cls(**options)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


class Registry(Generic[T]):
    """Name -> component. Unknown names raise a UserError listing the valid ones.

    A component with an `options_class` (a frozen dataclass of its own options: methods, editors) has its
    options built and checked by `options(name, mapping)`.
    """

    def __init__(self, axis: str) -> None:
        self.axis = axis
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            self.add(name, item)
            return item

        return decorator

    def add(self, name: str, item: T) -> None:
        if name in self._items:
            raise ValueError(f"{self.axis} {name!r} is registered twice")
        self._items[name] = item

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UserError(
                f"unknown {self.axis} {name!r}; valid: {', '.join(sorted(self._items))}.{hint}"
            ) from None

    def options(self, name: str, mapping: dict) -> Any:
        """Component `name`'s options_class built from `mapping`: an unknown key is a UserError naming the
        key, the component and its valid keys; a bad value is the dataclass's own UserError."""
        return build_options(self.get(name).options_class, mapping, f"{self.axis} {name}")

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[tuple[str, T]]:
        return iter(sorted(self._items.items()))
