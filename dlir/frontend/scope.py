"""What names can stand for while a model is elaborated, and the frames that hold them."""

from __future__ import annotations

from collections import ChainMap
from dataclasses import dataclass, field
from typing import Any

from dlir.ir.types import Dim

MISSING: Any = object()  # Frame.lookup's answer for an unbound name


@dataclass
class DefRef:
    """A name bound to a definition in the file: a layer, fn or model."""

    kind: str  # "layer" | "fn" | "model"
    name: str
    tree: Any
    file: str = ""  # where it is written (the standard library has its own file)


@dataclass
class OpRef:
    """A name bound to a registered op."""

    name: str


@dataclass(eq=False)
class Instance:
    """A layer or model instance: its param path, config, params and sub-instances."""

    definition: DefRef
    prefix: str  # dotted path of its params, "" for the model being compiled
    scope: dict[str, Any] = field(default_factory=dict)
    forward: Any = None  # a layer's forward_def tree
    children: dict[str, Instance] = field(default_factory=dict)  # by local key, reused on re-calls
    created: Any = None  # the SourceLoc of the line that created it, for error notes

    def path(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name


@dataclass
class Frame:
    """One body being executed: its bindings, owner instance, loop indices and symbols."""

    scope: ChainMap[str, Any]
    owner: Instance | None
    symbols: dict[str, Dim]
    loops: list[int] = field(default_factory=list)
    created: set[str] = field(default_factory=set)  # params/instances made by this execution
    kind: str = "model"  # "model" | "layer" | "forward" | "fn"

    def child(
        self, local: dict[str, Any], owner: Instance | None, kind: str, symbols: dict[str, Dim] | None = None
    ) -> Frame:
        base = owner.scope if owner is not None else {}
        return Frame(ChainMap(local, base), owner, symbols if symbols is not None else self.symbols, kind=kind)

    def lookup(self, name: str) -> Any:
        """The innermost binding of ``name``, or :data:`MISSING`: one pass over the maps, where
        ``name in scope`` then ``scope[name]`` on the ChainMap took two (names are looked up a lot)."""
        for m in self.scope.maps:
            if name in m:
                return m[name]
        return MISSING

    def loop_suffix(self) -> str:
        return "".join(f".{i}" for i in self.loops)
