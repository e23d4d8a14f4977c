"""Django's PostgreSQL backend, plus statements sent in one round trip with the COMMIT (`DatabaseWrapper.commit_ride`).

A service whose statements must run at the very end of a transaction (the audit chain's append, which holds a lock
from its first statement to the commit) registers a `CommitRider`; the outermost commit then sends its statements,
the COMMIT and the riders' after-statements as one message, so no client round trip falls inside that lock. Riders
are dropped on rollback; a failure inside the message rolls the whole transaction back as any failed commit does.
A transaction that has sent nothing before its commit sends its BEGIN in that message too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError
from django.db.backends.postgresql import base
from django.db.backends.utils import debug_transaction
from psycopg import pq

Rows = list[tuple[Any, ...]] | None  # a statement's rows; None for a statement that returns none


@dataclass
class CommitRider:
    """Statements to run right before the COMMIT, and one right after it, in the COMMIT's own message."""

    # one statement each (no ';'), with %(name)s parameters; "%%" for a literal percent sign
    before: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    after: str = ""  # one statement, no parameters, run once the transaction committed; "" for none
    done: Callable[[list[Rows]], None] | None = None  # given the rows of each `before` statement, once committed


class DatabaseWrapper(base.DatabaseWrapper):
    """PostgreSQL connection that can send registered statements with its COMMIT."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.commit_riders: list[CommitRider] = []

    def commit_ride(self, rider: CommitRider) -> None:
        """Send `rider`'s statements with this transaction's COMMIT (riders in order of registration)."""
        if not self.in_atomic_block:
            raise RuntimeError("commit_ride needs an open transaction.atomic() block")
        self.commit_riders.append(rider)

    def _commit(self) -> None:
        riders, self.commit_riders = self.commit_riders, []
        if not riders or self.connection is None:
            return super()._commit()  # type: ignore[no-any-return]
        params: dict[str, Any] = {}
        parts: list[str] = []
        for n, rider in enumerate(riders):
            for m, (sql, values) in enumerate(rider.before):
                prefix = f"r{n}s{m}_"  # each statement's parameters under names of their own
                parts.append(sql.replace("%(", f"%({prefix}"))
                params.update({prefix + k: v for k, v in values.items()})
        parts.append("COMMIT")
        parts += [rider.after for rider in riders if rider.after]
        # A transaction that has sent nothing yet (one that only records an audit event) has not begun on the
        # server: psycopg would send its BEGIN alone first, a round trip of its own. The message carries it instead.
        unbegun = self.connection.info.transaction_status == pq.TransactionStatus.IDLE
        if unbegun:
            parts.insert(0, "BEGIN")
            self.connection.autocommit = True  # so psycopg sends no BEGIN of its own before the message
        try:
            with debug_transaction(self, "COMMIT"), self.wrap_database_errors, self.connection.cursor() as cur:
                cur.execute(";\n".join(parts), params)  # simple query protocol: one round trip for all of them
                if self.connection.info.transaction_status != pq.TransactionStatus.IDLE:
                    raise DatabaseError("the commit message ran but its transaction is still open")
                results: list[Rows] = []
                while True:
                    results.append(cur.fetchall() if cur.description is not None else None)
                    if not cur.nextset():
                        break
        finally:
            if unbegun and self.connection.info.transaction_status == pq.TransactionStatus.IDLE:
                self.connection.autocommit = False  # as Django left it (a failed message: its rollback ends it)
        results = results[1:] if unbegun else results  # the BEGIN's (no rows)
        for rider in riders:
            count = len(rider.before)
            if rider.done is not None:
                rider.done(results[:count])
            results = results[count:]
        return None

    def _rollback(self) -> None:
        self.commit_riders = []
        super()._rollback()

    def _close(self) -> None:
        self.commit_riders = []
        super()._close()
