"""Imported first by the package: asyncpg, or an error naming the ``postgres`` extra;
and our ``config``, not an application module of that name."""

from infra._imports import ensure_ours, require

require("asyncpg", extra="postgres")
ensure_ours("config")
