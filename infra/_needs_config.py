"""Imported first by the ``infra`` packages that read ``config``: a shadowing ``config``
module of the application is reported by name (see :func:`infra._imports.ensure_ours`)."""

from infra._imports import ensure_ours

ensure_ours("config")
