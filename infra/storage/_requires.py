"""asyncpg, or an error naming the ``postgres`` extra; the package imports this first."""

from infra._imports import require

require("asyncpg", extra="postgres")
