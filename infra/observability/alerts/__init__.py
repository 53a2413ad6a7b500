"""Prometheus alert rules for Semantica Infra, and their tests.

* ``semantica.rules.yml`` -- the rules (:data:`RULES_FILE`); load it with
  ``rule_files: [semantica.rules.yml]``. Every metric it names is exported by
  :mod:`infra.observability`.
* ``semantica.rules.test.yml`` -- their promtool-style unit tests (:data:`RULE_TESTS_FILE`),
  run in Python by :func:`~infra.observability.alerts.rule_tests.run_rule_tests`
  (``promtool`` is a Go binary pip cannot install; the evaluator is
  :mod:`~infra.observability.alerts.promql`). Both modules need the ``promql-parser``
  package (the ``dev`` extra) and are imported only when used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["RULES_FILE", "RULE_TESTS_FILE"]

#: The alert rules file shipped with the package.
RULES_FILE: Final = Path(__file__).with_name("semantica.rules.yml")
#: Its promtool-style unit tests.
RULE_TESTS_FILE: Final = Path(__file__).with_name("semantica.rules.test.yml")
