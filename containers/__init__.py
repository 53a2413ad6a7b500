"""Declarative dependency-injector containers that build clients lazily as resources.

See :mod:`containers.core` for the pattern every backend container follows.
"""

from containers import _requires  # noqa: F401 - first: names a shadowing config
from containers.core import CoreContainer

__all__ = ["CoreContainer"]
