"""Semantica Infra: typed async ports and adapters for PostgreSQL, Redis, Qdrant, Bolt graph
databases and LLM providers, with resilience and observability built in.

Importing this package connects to nothing and imports no driver.
"""

from infra.exceptions import InfraError

__all__ = ["InfraError", "__version__"]

__version__ = "0.1.0"
