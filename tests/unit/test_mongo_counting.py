"""What the MongoDB command listener counts: round trips by command, documents by collection."""

from __future__ import annotations

from collections import Counter
from typing import Any

from shared.mongo import CommandCounter


class Started:
    def __init__(self, name: str, command: dict[str, Any]) -> None:
        self.command_name = name
        self.command = command


def test_writes_count_their_documents_and_reads_count_none() -> None:
    commands: Counter[str] = Counter()
    documents: Counter[str] = Counter()
    counter = CommandCounter(lambda name: commands.update([name]),
                             lambda collection, n: documents.update({collection: n}))
    for name, command in [
        ("insert", {"insert": "run_history", "documents": [{}, {}]}),
        ("update", {"update": "runs", "updates": [{}, {}, {}]}),
        ("delete", {"delete": "tokens", "deletes": [{}]}),
        ("findAndModify", {"findAndModify": "work_items"}),
        ("find", {"find": "runs", "filter": {}}),
    ]:
        counter.started(Started(name, command))  # type: ignore[arg-type]
    assert commands == {"insert": 1, "update": 1, "delete": 1, "findAndModify": 1, "find": 1}
    assert documents == {"run_history": 2, "runs": 3, "tokens": 1, "work_items": 1}


def test_without_a_document_count_only_round_trips_are_counted() -> None:
    commands: Counter[str] = Counter()
    CommandCounter(lambda name: commands.update([name])).started(
        Started("insert", {"insert": "x", "documents": [{}]}))  # type: ignore[arg-type]
    assert commands == {"insert": 1}
