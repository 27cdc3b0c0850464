"""The standard library of layers, written in the dlir language (`use nn`)."""

from __future__ import annotations

from importlib import resources


def library_source(name: str) -> tuple[str, str] | None:
    """(file name, text) of the library ``name``, or None if there is none."""
    res = resources.files(__name__).joinpath(f"{name}.dlir")
    if not res.is_file():
        return None
    # A display name, not the install path: generated code and messages stay the same on every machine.
    return f"<stdlib>/{name}.dlir", res.read_text(encoding="utf-8")


def libraries() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".dlir"))
