"""The one name -> object registry of pedlib, with close-match hints: metrics, models and
datasets each keep one."""

from __future__ import annotations

import difflib
from typing import Generic, Iterator, TypeVar

__all__ = ["Registry", "UnknownName"]

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has; the message lists close matches. Both a ``KeyError`` (a
    lookup) and a ``ValueError`` (a bad argument), so that either kind of caller catches it."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Registry(Generic[T]):
    """Maps names to entries; an unknown name raises :class:`UnknownName` listing close matches.
    ``fold_case``: names are matched without regard to case (metrics: ``LogME`` is ``logme``)."""

    def __init__(self, kind: str, *, fold_case: bool = False):
        self.kind = kind
        self.fold_case = fold_case
        self._entries: dict[str, T] = {}

    def key(self, name: str) -> str:
        if not isinstance(name, str):
            raise TypeError(f"{self.kind} name must be a string, got {type(name).__name__}")
        return name.lower() if self.fold_case else name

    def add(self, name: str, entry: T) -> T:
        if self.key(name) in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[self.key(name)] = entry
        return entry

    def get(self, name: str) -> T:
        key = self.key(name)
        try:
            return self._entries[key]
        except KeyError:
            close = difflib.get_close_matches(key, self._entries, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise UnknownName(f"unknown {self.kind} {name!r}{hint} Available: "
                              f"{', '.join(sorted(self._entries))}") from None

    def remove(self, name: str) -> T:
        return self._entries.pop(self.key(name))

    def items(self):
        return self._entries.items()

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.key(name) in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)
