"""The SQL CDR store of a running bridge: a row when a call starts, completed when it ends, off the loop."""

from __future__ import annotations

from pathlib import Path

import structlog

from ivr.cdr import BackgroundWriter, CdrWrite, utc_now
from ivr.cdrstore.database import CdrDatabase
from ivr.cdrstore.spool import CdrSpool

log = structlog.get_logger(__name__)


class SqlCdrStore(BackgroundWriter):
    """Writes calls' rows to a CDR database from the writer thread, in batches, one transaction each.

    Built at start-up (blocking there is fine, and a bad URL or an unreachable server fails loudly): the
    schema is migrated, then rows this node left open in an earlier run, the calls in progress when it
    crashed, are marked interrupted (`interrupted` holds their channel ids), and records an earlier run
    spooled during an outage are stored. While the database is down, batches go to the spool on disk.
    """

    def __init__(self, database: CdrDatabase, node: str, instance: str, spool: Path) -> None:
        self.database = database
        self.node = node
        self.instance = instance
        self.spool = CdrSpool(spool)
        self._outage = False
        database.migrate()
        self.interrupted = database.recover(node, instance, utc_now())
        self._store([])
        super().__init__()

    @property
    def where(self) -> str:
        return self.database.where

    def _store(self, batch: list[CdrWrite]) -> None:
        spooled = self.spool.pending()
        if not spooled and not batch:
            return
        try:
            self.database.store(spooled + batch, self.node, self.instance)
        except Exception as exc:
            if not self.database.reachable():
                self.spool.append(batch)  # an outage: nothing is lost, the next batch tries again
                if not self._outage:
                    self._outage = True
                    log.error(
                        "cdr database unreachable, records spooled to disk",
                        where=self.where,
                        spool=str(self.spool.path),
                        error=f"{type(exc).__name__}: {exc}",
                    )
                return
            self._store_each(spooled + batch)
        if self._outage or spooled:
            log.info("cdr spool stored", where=self.where, records=len(spooled))
        self._outage = False
        self.spool.clear()

    def _store_each(self, writes: list[CdrWrite]) -> None:
        """The database is up but refused the batch: store what it takes; set aside what it will not."""
        for write in writes:
            try:
                self.database.store([write], self.node, self.instance)
            except Exception as exc:
                self.spool.reject(write)
                log.error(
                    "cdr record refused by the database, kept in the rejected file",
                    where=self.where,
                    rejected=str(self.spool.rejected_path),
                    error=f"{type(exc).__name__}: {exc}",
                    call_id=write.call_id,
                    channel_id=write.channel_id,
                )

    def _closed_down(self) -> None:
        self.database.close()
