"""Imported first by ``containers``: our ``config`` package, not an application module
of that name (see :func:`infra._imports.ensure_ours`)."""

from infra._imports import ensure_ours

ensure_ours("config")
