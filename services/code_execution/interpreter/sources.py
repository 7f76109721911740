"""The cells' source lines in ``linecache``, for tracebacks, warnings and ``inspect.getsource``.

A cell's filename (``<cell-N>``) is no file: linecache knows its lines only from its cache. But linecache
imports tokenize and re, milliseconds of CPU at every sandbox's start that a session which never formats a
traceback or a warning need not pay. So the sources wait here until something imports linecache: the
interpreter's failure path, or the code (traceback, warnings, inspect, logging, a library using them).
Until then a finder at the head of ``sys.meta_path`` watches for that one import: it lets the other finders
find the module, fills the new module's cache before any code can read it, and leaves ``sys.meta_path``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any

Entry = tuple  # linecache's (size, mtime, lines, fullname); mtime None: never checked against a file


class CellSources:
    def __init__(self) -> None:
        self.waiting: dict[str, Entry] = {}

    def add(self, filename: str, code: str) -> None:
        self.waiting[filename] = (len(code), None, code.splitlines(True), filename)
        if not self.flush() and self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def flush(self, linecache: ModuleType | None = None) -> bool:
        """Put the waiting sources into linecache's cache if it is imported (and stop watching); whether it is."""
        linecache = linecache or sys.modules.get("linecache")
        if linecache is None:
            return False
        linecache.cache.update(self.waiting)
        self.waiting.clear()
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        return True

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """The meta path finder protocol: linecache's spec from the other finders, with a loader that fills its
        cache; None for any other module."""
        if name != "linecache":
            return None
        for finder in [finder for finder in sys.meta_path if finder is not self]:
            spec = finder.find_spec(name, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenFill(spec.loader, self)
                return spec
        return None


class _ThenFill:
    """The loader of linecache's spec, which fills the cache as soon as the module is executed."""

    def __init__(self, loader: Any, sources: CellSources) -> None:
        self.loader, self.sources = loader, sources

    def create_module(self, spec: Any) -> ModuleType | None:
        create = getattr(self.loader, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = module.__spec__.loader = self.loader  # the module as the import system made it
        self.loader.exec_module(module)
        self.sources.flush(module)
