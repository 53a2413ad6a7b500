"""Rewrite the type checkers' declaration of ``Settings``' flat reads from config.groups.

Run after adding or renaming a setting: ``PYTHONPATH=. python tools/write_flat_reads.py``.
"""

from __future__ import annotations

from pathlib import Path

import config.settings

if __name__ == "__main__":
    changed = config.settings.write_flat_reads(Path(config.settings.__file__))
    print("config/settings.py: flat reads rewritten" if changed else "flat reads up to date")
