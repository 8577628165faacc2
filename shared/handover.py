"""A topic handed over from one consumer group to another without reading it again.

When a service moves a topic from a group of its own to another (the stage-coordinator's
``workitems.events``, read by ``stage-coordinator-participants`` until decision 20), the new
group has no committed position on it and would start at ``earliest``: every message read
again.  Harmless (consumers drop repeats by event id) but a long replay on an install with
history.  Instead, when a partition of such a topic is assigned and the new group has no
committed offset for it, the consumer starts where the old group had committed, and commits
that position for its own group at once.  Once the new group has committed, the old group's
offsets are never read again; the old group is left for the broker to expire.

Done in the rebalance listener, by the member the partition was assigned to: a commit from
outside the group (an admin request) is refused while the group has members, which it has
during a rolling upgrade.  Any failure here only costs the replay it was meant to spare.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

log = logging.getLogger("baton.handover")
OldOffsets = Callable[[str, list[TopicPartition]], Any]  # async: group, partitions -> offsets


class OffsetHandover(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, previous: Mapping[str, str], consumer: Callable[[], Any],
                 old_offsets: OldOffsets) -> None:
        self.previous = dict(previous)  # topic -> the group that read it before
        self.consumer = consumer  # the subscriber's aiokafka consumer, once started
        self.old_offsets = old_offsets
        self.handed_over: dict[TopicPartition, int] = {}  # what was taken (for the tests)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing to hand back: the group's own commits carry on."""

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self.consumer()
        candidates = [tp for tp in assigned if tp.topic in self.previous]
        if consumer is None or not candidates:
            return
        # Not fetched until decided (before the first await): the consumer's fetcher runs
        # beside this listener and would start them from the beginning meanwhile.
        consumer.pause(*candidates)
        try:
            await self._take_over(consumer, candidates)
        except Exception as exc:  # a replay from the beginning is the fallback
            log.warning("could not take over the offsets of %s: %r; reading them from the "
                        "beginning (repeats are dropped by id)", sorted(self.previous), exc)
        finally:
            consumer.resume(*candidates)

    async def _take_over(self, consumer: Any, candidates: list[TopicPartition]) -> None:
        unread = [tp for tp in candidates if await consumer.committed(tp) is None]
        by_group: dict[str, list[TopicPartition]] = {}
        for tp in unread:
            by_group.setdefault(self.previous[tp.topic], []).append(tp)
        starts: dict[TopicPartition, int] = {}
        for group, partitions in by_group.items():
            found = await self.old_offsets(group, partitions)
            starts |= {tp: meta.offset for tp, meta in found.items()
                       if tp in partitions and meta.offset >= 0}
        if not starts:
            return
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        await consumer.commit({tp: OffsetAndMetadata(o, "") for tp, o in starts.items()})
        self.handed_over |= starts
        log.warning("took over %d partitions at the offsets of %s", len(starts),
                    ", ".join(sorted(set(by_group))))


def admin_offsets(options: Mapping[str, Any]) -> OldOffsets:
    """The committed offsets of another group, read with an admin client of ``options``."""

    async def offsets(group: str, partitions: list[TopicPartition]
                      ) -> dict[TopicPartition, OffsetAndMetadata]:
        admin = AIOKafkaAdminClient(**options, request_timeout_ms=10_000)
        await admin.start()
        try:
            found: dict[TopicPartition, OffsetAndMetadata] = (
                await admin.list_consumer_group_offsets(group, partitions=partitions))
            return found
        finally:
            await admin.close()

    return offsets
