"""Test support shipped with the library: fakes, chaos wrappers and embedded servers.

Subpackages and modules are imported explicitly (``from infra.testing.embedded import
EmbeddedRedis``) so that importing :mod:`infra.testing` itself costs nothing and needs no
optional dependency.
"""

__all__: list[str] = []
