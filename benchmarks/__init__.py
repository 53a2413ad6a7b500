"""Benchmarks of what applications run: the container's default configuration.

``python -m benchmarks`` (see :mod:`benchmarks.__main__`) starts the embedded PostgreSQL
and Redis, builds ``ApplicationContainer`` with default settings pointed at them, and
measures the adapters it hands out -- the *headline* -- next to breakdown variants
(tracing sampled out / in, a passthrough policy, the bare adapter) and raw-driver
baselines doing the same work, at 1, 8, 32 and 128 concurrent tasks. It writes
``benchmarks/report.md``, ``report.json`` and ``report.png``.

Modules, by concept:

* :mod:`~benchmarks.harness` -- timing, interleaved rounds, per-round ratios, medians;
* :mod:`~benchmarks.environment` -- servers, the started container, tracing modes;
* :mod:`~benchmarks.scenario` -- what a scenario measures and returns, profiles;
* one module per scenario: :mod:`~benchmarks.redis_get`,
  :mod:`~benchmarks.postgres_fetchval`, :mod:`~benchmarks.tpcb`,
  :mod:`~benchmarks.three_tier`, :mod:`~benchmarks.rejected`;
* :mod:`~benchmarks.goals` -- the goals table and the verdicts;
* :mod:`~benchmarks.report` and :mod:`~benchmarks.chart` -- the outputs.

The older ``benchmarks/bench_*.py`` scripts measure single components in isolation and
still run on their own (``python benchmarks/bench_redis.py``).
"""
