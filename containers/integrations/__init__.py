"""Web-framework integrations: run a container inside a FastAPI/Starlette or aiohttp app.

* :mod:`containers.integrations.fastapi` -- a lifespan, ``Annotated`` dependency aliases
  (``StoreDep``, ``CacheDep``, ``ThreeTierDep``, ``LockDep``, ``provided(...)``) and an
  error-handler installer;
* :mod:`containers.integrations.aiohttp` -- a ``cleanup_ctx`` and the same error mapping
  as a middleware;
* :mod:`containers.integrations.http_errors` -- that mapping, framework-neutral: which
  HTTP answer each of our errors gets (the example service uses it too);
* :mod:`containers.integrations.serving` -- what every framework's startup and shutdown
  do with the container (wire, start with rollback, start caches, a startup hook, stop).

Why here, under ``containers``: an integration ties a container's lifecycle
(:mod:`containers.lifecycle`) to a framework's, and hands out what the container
provides; ``infra`` knows nothing of containers, and stays framework-free. One module
per framework, and each framework is imported only by its own module, so neither is a
dependency of the library (``pip install 'semantica-infra[fastapi]'`` brings FastAPI);
importing this package imports no framework.
"""

from __future__ import annotations

__all__: list[str] = []
