"""Declarative dependency-injector containers that build clients lazily as resources.

What an application needs, from one import::

    from containers import ApplicationContainer, lifecycle

    app = ApplicationContainer()
    await lifecycle.start(app)
    ...
    await lifecycle.stop(app)

Public names: :class:`ApplicationContainer` (core + observability + every backend),
:class:`CoreContainer` (the settings), :class:`ObservabilityContainer`,
:class:`PostgresContainer`, :class:`RedisContainer` -- for composing your own
application container -- and the :mod:`containers.lifecycle` module (``start``,
``stop``, ``running``, ``validate``, ``resolve``). Tests swap backends for fakes with
:mod:`containers.testing`. See :mod:`containers.core` for the pattern every backend
container follows, and ``docs/architecture.md`` for where containers sit.

Importing this package imports no driver or telemetry SDK (a test pins it): the
containers only name their providers; each driver is imported when its resource starts.
"""

from containers import (
    _requires,  # noqa: F401 - first: names a shadowing config
    lifecycle,
)
from containers.application import ApplicationContainer
from containers.core import CoreContainer
from containers.observability import ObservabilityContainer
from containers.postgres import PostgresContainer
from containers.redis import RedisContainer

__all__ = [
    "ApplicationContainer",
    "CoreContainer",
    "ObservabilityContainer",
    "PostgresContainer",
    "RedisContainer",
    "lifecycle",
]
