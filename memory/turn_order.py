"""The order of each conversation's turns across processes sharing one database.

Behind a load balancer, consecutive messages of one conversation may reach different processes.
Each message joins its conversation's queue under the platform's own message id (increasing within
a chat: the order its users saw). A process answers a message once it has waited ``window``
seconds (so a message that reached another process a moment earlier has joined too) and no
earlier message of that conversation held by another process is still waiting or running.
Messages within one process are already in order (its lanes). A holder that stops renewing
(its process was killed) no longer holds anyone up after ``stale_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import delete, exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from greenroom.memory.db import HOLDER, Database
from greenroom.memory.schema import conversation_turns as turns

log = logging.getLogger(__name__)


class SharedTurnOrder:
    def __init__(
        self,
        db: Database,
        stale_seconds: float = 60.0,
        window: float = 0.25,
        clock: Callable[[], float] = time.time,
        holder: str = HOLDER,
    ) -> None:
        self.db = db
        self.stale = stale_seconds
        self.window = window
        self.clock = clock
        self.holder = holder

    def join(self, conversation: str, seq: int) -> None:
        """A message has just arrived."""
        now = self.clock()
        insert = sqlite_insert if self.db.sqlite else pg_insert
        statement = insert(turns).values(conversation=conversation, seq=seq, holder=self.holder, joined=now, at=now)
        with self.db.write() as conn:
            conn.execute(statement.on_conflict_do_nothing(index_elements=["conversation", "seq"]))

    def is_turn(self, conversation: str, seq: int) -> bool:
        """Whether the message may be answered now (forgetting earlier ones whose holders went silent)."""
        now = self.clock()
        mine = (turns.c.conversation == conversation) & (turns.c.seq == seq)
        with self.db.write() as conn:
            joined = conn.execute(select(turns.c.joined).where(mine)).scalar()
            if joined is not None and now - joined < self.window:
                return False
            earlier = (turns.c.conversation == conversation) & (turns.c.seq < seq) & (turns.c.holder != self.holder)
            gone = conn.execute(delete(turns).where(earlier, turns.c.at < now - self.stale)).rowcount
            if gone:
                log.warning("%s: %d earlier message(s) went silent on another process; going ahead", conversation, gone)
            return not conn.execute(select(exists().where(earlier))).scalar()

    def renew(self, conversation: str, seq: int) -> None:
        """Still working on it (a long turn): keeps later messages waiting for it."""
        with self.db.write() as conn:
            conn.execute(
                update(turns).where(turns.c.conversation == conversation, turns.c.seq == seq).values(at=self.clock())
            )

    def finish(self, conversation: str, seq: int) -> None:
        """Done with it (answered, refused or cut off): later messages may go."""
        with self.db.write() as conn:
            conn.execute(delete(turns).where(turns.c.conversation == conversation, turns.c.seq == seq))
