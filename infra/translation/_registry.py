"""The registry of driver tables and the MRO walk that picks a translator.

Driver tables live in sibling modules; this module knows no driver.

How a translator is chosen
--------------------------
Tables are keyed by *exact* driver class. For an exception ``exc`` we walk
``type(exc).__mro__`` from the most derived class to ``object`` and, at each class, try
the translators registered for exactly that class (newest registration first). The first
translator that returns an error wins; one that returns ``None`` declines and the walk
goes on. So the most derived class always wins, whatever order a table lists its rows in:
``asyncpg.UniqueViolationError`` is found before its base
``IntegrityConstraintViolationError``, and ``litellm.ContextWindowExceededError`` before
the ``openai.BadRequestError`` it inherits from. ``builtins.Exception`` has a row, so the
walk always ends in a result (the family's base error, not retryable).

Why exact-class keys rather than ``isinstance`` in table order: table order would make
correctness depend on every table author sorting rows by specificity, and tables from
different drivers (litellm rows over openai rows) could not be ordered against each other
at all. The MRO already encodes specificity; we just read it.

Lazy loading
------------
A table is registered under a top-level module name (``"asyncpg"``) with a loader. The
loader runs the first time an exception whose MRO contains a class from that module is
translated -- by which time the driver is imported anyway, so importing this package
costs nothing and pulls in no driver (litellm alone takes seconds to import).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

from infra.exceptions import InfraError
from infra.translation._context import TableLoader, TranslationContext, Translator

__all__ = ["dispatch", "register_driver_table"]


@dataclass(slots=True)
class _Registration:
    seq: int
    loader: TableLoader
    table: dict[type[BaseException], Translator] | None = field(default=None)


class _Registry:
    """Driver tables by module root, loaded on first need, merged newest-first."""

    def __init__(self) -> None:
        # Reentrant: a loader may itself register a table (or import code that does).
        self._lock = threading.RLock()
        self._seq = itertools.count()
        self._by_root: dict[str, list[_Registration]] = {}

    def register(self, module_root: str, loader: TableLoader) -> Callable[[], None]:
        if not isinstance(module_root, str) or not module_root.isidentifier():
            raise ValueError(
                "module_root must be a top-level module name such as 'asyncpg', "
                f"got {module_root!r}"
            )
        if not callable(loader):
            raise TypeError(f"loader must be a zero-argument callable, got {loader!r}")
        registration = _Registration(next(self._seq), loader)
        with self._lock:
            self._by_root.setdefault(module_root, []).append(registration)

        def unregister() -> None:
            with self._lock:
                entries = self._by_root.get(module_root, [])
                if registration in entries:
                    entries.remove(registration)

        return unregister

    def translators(self, mro: Sequence[type]) -> list[list[Translator]]:
        """For each class of ``mro``, its translators (newest first); loads as needed."""
        roots = {cls.__module__.partition(".")[0] for cls in mro}
        with self._lock:
            loaded = [reg for regs in self._by_root.values() for reg in regs]
            for root in roots:
                for reg in self._by_root.get(root, []):
                    if reg.table is None:
                        reg.table = _load(reg.loader)
        tables = [reg.table for reg in sorted(loaded, key=lambda r: -r.seq) if reg.table]
        return [[t[cls] for t in tables if cls in t] for cls in mro]


def _load(loader: TableLoader) -> dict[type[BaseException], Translator]:
    try:
        rows = loader()
    except ImportError:
        # The driver is not installed, so none of its exceptions can reach us.
        return {}
    table: dict[type[BaseException], Translator] = {}
    for row in rows:
        cls, translator = row
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise TypeError(f"driver table keys must be exception classes, got {cls!r}")
        if not callable(translator):
            raise TypeError(f"translator for {cls.__name__} must be callable")
        table[cls] = translator
    return table


_REGISTRY: Final = _Registry()


def register_driver_table(module_root: str, loader: TableLoader) -> Callable[[], None]:
    """Add a driver table, loaded the first time an exception from ``module_root`` arrives.

    ``loader`` returns ``(driver exception class, translator)`` rows; it may import the
    driver, because it only runs once an exception from that driver exists. Rows of a
    later registration are tried before earlier rows for the same class, so an adapter
    can refine a built-in mapping. Returns a function that removes the table again.
    """
    return _REGISTRY.register(module_root, loader)


def dispatch(exc: BaseException, ctx: TranslationContext) -> InfraError:
    """The translated error for ``exc``, without ``__cause__`` or seam details set."""
    mro = type(exc).__mro__
    for translators in _REGISTRY.translators(mro):
        for translator in translators:
            result = translator(exc, ctx)
            if result is not None:
                return result
    return ctx.error(ctx.role_class("base"), exc)
