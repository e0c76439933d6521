"""The SQL CDR store of a running bridge: a row when a call starts, completed when it ends, off the loop."""

from __future__ import annotations

from ivr.cdr import BackgroundWriter, CdrWrite, utc_now
from ivr.cdrstore.database import CdrDatabase


class SqlCdrStore(BackgroundWriter):
    """Writes calls' rows to a CDR database from the writer thread, in batches, one transaction each.

    Built at start-up (blocking there is fine, and a bad URL or an unreachable server fails loudly): the
    schema is migrated, then rows this node left open in an earlier run, the calls in progress when it
    crashed, are marked interrupted (`interrupted` holds their channel ids).
    """

    def __init__(self, database: CdrDatabase, node: str, instance: str) -> None:
        self.database = database
        self.node = node
        self.instance = instance
        database.migrate()
        self.interrupted = database.recover(node, instance, utc_now())
        super().__init__()

    @property
    def where(self) -> str:
        return self.database.where

    def _store(self, batch: list[CdrWrite]) -> None:
        self.database.store(batch, self.node, self.instance)

    def _closed_down(self) -> None:
        self.database.close()
