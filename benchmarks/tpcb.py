"""A TPC-B-like transaction (pgbench's five statements) through the store vs raw asyncpg.

Each transaction, as pgbench's built-in TPC-B-like script::

    UPDATE accounts SET abalance = abalance + :delta WHERE aid = :aid;
    SELECT abalance FROM accounts WHERE aid = :aid;
    UPDATE tellers  SET tbalance = tbalance + :delta WHERE tid = :tid;
    UPDATE branches SET bbalance = bbalance + :delta WHERE bid = :bid;
    INSERT INTO history (tid, bid, aid, delta, mtime) VALUES (..., CURRENT_TIMESTAMP);

in a schema of its own (dropped at the end) with 1,000 branches, 10,000 tellers and
100,000 accounts: many more branches than pgbench's scale 1, so that row locks on the
branch do not serialize concurrent clients and the figure shows the client, not lock
waits. Every variant draws its parameters from its own ``random.Random`` with the same
seed, so all do the same work.

Variants: **raw asyncpg transaction** (baseline: ``pool.acquire()`` +
``conn.transaction()`` on a pool of the settings' size), **container default**
(``async with store.transaction() as tx`` on ``app.postgres.store()``), **sampled out**,
**passthrough** (see :mod:`benchmarks.postgres_fetchval`).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from benchmarks.environment import Environment
from benchmarks.harness import Variant
from benchmarks.postgres_fetchval import Stores
from benchmarks.scenario import HEADLINE, Plan, ScenarioResult, measure

__all__ = ["BASELINE", "LEVELS", "run"]

BASELINE = "raw asyncpg transaction"
LEVELS = (1, 8, 16, 32, 128)
SCHEMA = "semantica_bench_tpcb"  # written out in the statements below
BRANCHES, TELLERS, ACCOUNTS = 1_000, 10_000, 100_000

UPDATE_ACCOUNT = "UPDATE semantica_bench_tpcb.accounts SET abalance = abalance + $1 WHERE aid = $2"
SELECT_ACCOUNT = "SELECT abalance FROM semantica_bench_tpcb.accounts WHERE aid = $1"
UPDATE_TELLER = "UPDATE semantica_bench_tpcb.tellers SET tbalance = tbalance + $1 WHERE tid = $2"
UPDATE_BRANCH = "UPDATE semantica_bench_tpcb.branches SET bbalance = bbalance + $1 WHERE bid = $2"
INSERT_HISTORY = (
    "INSERT INTO semantica_bench_tpcb.history (tid, bid, aid, delta, mtime) "
    "VALUES ($1, $2, $3, $4, CURRENT_TIMESTAMP)"
)

SETUP = [
    "DROP SCHEMA IF EXISTS semantica_bench_tpcb CASCADE",
    "CREATE SCHEMA semantica_bench_tpcb",
    (
        "CREATE TABLE semantica_bench_tpcb.branches "
        "(bid int PRIMARY KEY, bbalance int NOT NULL, filler char(88))"
    ),
    (
        "CREATE TABLE semantica_bench_tpcb.tellers "
        "(tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL, filler char(84))"
    ),
    (
        "CREATE TABLE semantica_bench_tpcb.accounts "
        "(aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))"
    ),
    (
        "CREATE TABLE semantica_bench_tpcb.history "
        "(tid int, bid int, aid int, delta int, mtime timestamp, filler char(22))"
    ),
    "INSERT INTO semantica_bench_tpcb.branches SELECT g, 0, '' FROM generate_series(1, 1000) g",
    (
        "INSERT INTO semantica_bench_tpcb.tellers "
        "SELECT g, (g - 1) % 1000 + 1, 0, '' FROM generate_series(1, 10000) g"
    ),
    (
        "INSERT INTO semantica_bench_tpcb.accounts "
        "SELECT g, (g - 1) % 1000 + 1, 0, '' FROM generate_series(1, 100000) g"
    ),
    "VACUUM ANALYZE semantica_bench_tpcb.branches",
    "VACUUM ANALYZE semantica_bench_tpcb.tellers",
    "VACUUM ANALYZE semantica_bench_tpcb.accounts",
]


def parameters(seed: int) -> Callable[[], tuple[int, int, int, int]]:
    """``(aid, tid, bid, delta)`` draws, as pgbench makes them, from one seeded RNG."""
    rng = random.Random(seed)

    def draw() -> tuple[int, int, int, int]:
        return (
            rng.randint(1, ACCOUNTS),
            rng.randint(1, TELLERS),
            rng.randint(1, BRANCHES),
            rng.randint(-5000, 5000),
        )

    return draw


def raw_transaction(pool: Any, seed: int) -> Callable[[], Awaitable[Any]]:
    """One TPC-B-like transaction on the raw asyncpg pool per call."""
    draw = parameters(seed)

    async def call() -> Any:
        aid, tid, bid, delta = draw()
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(UPDATE_ACCOUNT, delta, aid)
            balance = await conn.fetchval(SELECT_ACCOUNT, aid)
            await conn.execute(UPDATE_TELLER, delta, tid)
            await conn.execute(UPDATE_BRANCH, delta, bid)
            await conn.execute(INSERT_HISTORY, tid, bid, aid, delta)
        return balance

    return call


def store_transaction(store: Any, seed: int) -> Callable[[], Awaitable[Any]]:
    """The same transaction through a store's ``transaction()``."""
    draw = parameters(seed)

    async def call() -> Any:
        aid, tid, bid, delta = draw()
        async with store.transaction() as tx:
            await tx.execute(UPDATE_ACCOUNT, delta, aid)
            balance = await tx.fetchval(SELECT_ACCOUNT, aid)
            await tx.execute(UPDATE_TELLER, delta, tid)
            await tx.execute(UPDATE_BRANCH, delta, bid)
            await tx.execute(INSERT_HISTORY, tid, bid, aid, delta)
        return balance

    return call


async def run(
    env: Environment, stores: Stores, plan: Plan, progress: Any = print
) -> ScenarioResult:
    """Create the schema, measure every variant at :data:`LEVELS`, drop the schema."""
    modes = env.tracing
    async with stores.raw.acquire() as conn:
        for statement in SETUP:
            await conn.execute(statement)
    try:
        seed = 11
        variants = [
            Variant(BASELINE, raw_transaction(stores.raw, seed), modes.use_container),
            Variant(
                HEADLINE,
                store_transaction(stores.container, seed),
                modes.use_container,
                "store.transaction() on app.postgres.store()",
            ),
            Variant(
                "sampled out",
                store_transaction(stores.container, seed),
                modes.use_sampled_out,
                "ratio 0",
            ),
            Variant(
                "passthrough",
                store_transaction(stores.passthrough, seed),
                modes.use_sampled_out,
                "no policy",
            ),
        ]
        return await measure(
            "tpcb",
            "TPC-B-like transaction",
            "pgbench's 5-statement TPC-B-like transaction, 1,000 branches.",
            variants,
            baseline=BASELINE,
            plan=plan,
            full_calls=250,
            levels=LEVELS,
            progress=progress,
        )
    finally:
        modes.use_container()
        async with stores.raw.acquire() as conn:
            await conn.execute("DROP SCHEMA IF EXISTS semantica_bench_tpcb CASCADE")
