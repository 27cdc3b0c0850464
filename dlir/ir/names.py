"""The one rule for a name nothing else uses, shared by every place that makes one.

The ONNX exporter's tensor names (``h``, ``h.1``), the importer's dlir identifiers
(``x``, ``x_1``) and the ``.dlir`` source written back from a graph all take the first
free name of ``base``, ``base<sep>1``, ``base<sep>2``, ...; it sits this low so the
importer and the backends can share it without importing each other.
"""

from __future__ import annotations


def unique_name(base: str, taken: set[str], sep: str = ".") -> str:
    """``base``, or else ``base<sep>1``, ``base<sep>2``, ...: the first name not in ``taken``, which it joins."""
    name, i = base, 1
    while name in taken:
        name = f"{base}{sep}{i}"
        i += 1
    taken.add(name)
    return name


__all__ = ["unique_name"]
