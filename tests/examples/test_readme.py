"""Every ```python block of the README runs as written (top-level await allowed)."""

from __future__ import annotations

import ast
import re
import types
from pathlib import Path

import pytest

from infra.observability import MetricsCollector, reset_metrics_collector, set_metrics_collector

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_python_examples() -> None:
    """The README shows code (so the test below cannot pass vacuously)."""
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
async def test_readme_block_runs(index: int) -> None:
    """README block number `index` executes without error."""
    set_metrics_collector(MetricsCollector())
    try:
        code = compile(
            BLOCKS[index], f"README.md[block {index}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT
        )
        namespace: dict[str, object] = {"__name__": "readme"}
        result = eval(code, namespace)  # noqa: S307 - our own README, by design
        if isinstance(result, types.CoroutineType):
            await result
    finally:
        reset_metrics_collector()
