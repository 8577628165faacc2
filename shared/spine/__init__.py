"""The spine every stateful service stands on (docs/decisions/0011-the-spine.md).

- :mod:`~shared.spine.aggregate`: an aggregate, a decision, a conflict;
- :mod:`~shared.spine.store`: the store protocol and what its implementations share
  (:mod:`~shared.spine.mongo_store`, :mod:`~shared.spine.memory_store`);
- :mod:`~shared.spine.marks`: outboxes stamped per save and marked per writer, and their
  sweep (also the coordinator's run store's; on MongoDB: :mod:`~shared.spine.mongo_marks`);
- :mod:`~shared.spine.process`: a consumed batch (one find, one bulk write);
- :mod:`~shared.spine.act`: commands from HTTP and timers, group-committed;
- :mod:`~shared.spine.timers`: the timer loop (leased, epoch-guarded, woken by what is due).
"""

from shared.spine.act import GroupCommit
from shared.spine.aggregate import Aggregate, Conflict, Decided, TimerDue
from shared.spine.process import BatchDecider, Plan, commit, plan, process
from shared.spine.store import AggregateStore
from shared.spine.timers import TimerLoop

__all__ = ["Aggregate", "AggregateStore", "BatchDecider", "Conflict", "Decided",
           "GroupCommit", "Plan", "TimerDue", "TimerLoop", "commit", "plan", "process"]
