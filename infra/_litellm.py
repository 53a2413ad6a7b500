"""The one place litellm is imported.

Decision: by default we price with the model-cost map *bundled* in the installed litellm
release (``LITELLM_LOCAL_MODEL_COST_MAP=True``) instead of letting ``import litellm``
download the latest map at import time. Reasons: importing must not do network I/O (it
hangs and retries with sleeps on a machine without egress), and costs must be
reproducible for a given lockfile. Set ``LITELLM_LOCAL_MODEL_COST_MAP=False`` in the
environment before the first import to get litellm's own behaviour back.

litellm is slow to import (seconds), so it is imported on first use only -- and, from
the adapter's calls, in a worker thread (:func:`load_litellm`): imported on the event
loop, the first LLM request of a service would stall every other task of the process
for those seconds (readiness probes and database calls included). Two more
variables keep that import and later tokenizer loads off the network:
``LITELLM_OFFLINE_MODE=true`` (no remote model-metadata lookups) and ``HF_HUB_OFFLINE=1``
(tokenizers are not fetched from a model hub, which stalls for tens of seconds without
egress). Each is only a default: a value already in the environment wins. litellm's
"give feedback" banner, printed to stdout on every exception, is switched off.

Decision: ``litellm.DEFAULT_MAX_RETRIES`` is set to 0 in the process. Our calls pass
``num_retries=0, max_retries=0`` (the resilience policy is the one retry budget), but
litellm's OpenAI-compatible and Azure *embedding* paths compute ``max_retries or
litellm.DEFAULT_MAX_RETRIES``, so an explicit 0 became the default of 2 SDK retries: one
attempt of ours was three requests (``tests/integration/test_llm_adapter.py`` counts
them). With the default at 0 the explicit 0 holds. The default is used only where a
caller passes no retry count; code that calls litellm itself and wants the SDK's
retries passes ``max_retries`` > 0.
"""

from __future__ import annotations

import asyncio
import os
import sys
from types import ModuleType

from infra._imports import require

__all__ = ["import_litellm", "load_litellm"]


def import_litellm() -> ModuleType:
    """``litellm``, imported on first use with the bundled price map by default."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    litellm = require("litellm", extra="llm")
    litellm.suppress_debug_info = True  # type: ignore[attr-defined]
    litellm.DEFAULT_MAX_RETRIES = 0  # type: ignore[attr-defined]
    return litellm


async def load_litellm() -> ModuleType:
    """:func:`import_litellm` for coroutines: the first import runs in a worker thread, so
    the event loop keeps serving meanwhile; once imported, it returns at once.

    Python's import lock makes concurrent first calls wait for the one import.
    """
    if "litellm" in sys.modules:
        return import_litellm()  # imported: only the settings above, microseconds
    return await asyncio.to_thread(import_litellm)
