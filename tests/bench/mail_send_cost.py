"""CPU per mail sent by notification's SMTP channel to the bench's mail sink.

Not a test: a measuring tool for decision 38 (docs/benchmarks.md, the spine's ninth part).
It starts the bench's mail sink in its own process, sends 200 bench-like mails to warm the
sessions up, then ``count`` more with the dispatcher's default concurrency (16 sends at
once, in gathered groups of 32), on uvloop as the services run, and prints the sender's
CPU per mail (every thread of this process) and the sink's (from /proc).  Run it alone,
and alternate trees to compare (``PYTHONPATH=<tree>``):

    .venv/bin/python -m tests.bench.mail_send_cost [count] [--no-pipelining]

``--no-pipelining`` sends one command at a time, as to a server that does not offer
PIPELINING.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from datetime import UTC, datetime

import uvloop

from services.notification.channels.email import SmtpChannel
from services.notification.channels.smtp_session import SmtpSession
from services.notification.core.model import Delivery, UserContact
from tests.bench.mail_sink import MailSinkProcess

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
PEOPLE = [UserContact(name, email=f"{name}@example.com", channels=("email",))
          for name in ("alice", "bob")]
CONCURRENCY = 16  # the dispatcher's default send_concurrency
WARM_UP = 200


def delivery(number: int) -> Delivery:
    person = PEOPLE[number % 2].id
    return Delivery(id=f"{number:032x}", source_event_id=f"evt-{number}",
                    source_type="WorkItemAssigned", recipient=person, channel="email",
                    template="work_item_assigned", subject="New work item: Review",
                    body=f'"Review" in bench is now assigned to {person}.\n\n'
                         "Orchestration: bench\nStep: review\nDue: no due date\n"
                         f"Open it: /work/wi-{number}\n",
                    next_attempt_at=T0, created_at=T0)


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_of(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def send(channel: SmtpChannel, first: int, count: int) -> None:
    slots = asyncio.Semaphore(CONCURRENCY)

    async def one(number: int) -> None:
        async with slots:
            await channel.send(delivery(number), PEOPLE[number % 2])

    for start in range(first, first + count, 32):
        await asyncio.gather(*(one(n) for n in range(start, min(start + 32, first + count))))


async def main(count: int, pipelining: bool) -> None:
    if not pipelining:
        hello = SmtpSession.hello

        async def hello_without_pipelining(self: SmtpSession, local_name: str) -> None:
            await hello(self, local_name)
            self.features.pop("pipelining", None)

        SmtpSession.hello = hello_without_pipelining  # type: ignore[method-assign]
    sink = MailSinkProcess().start()
    try:
        channel = SmtpChannel("127.0.0.1", sink.port, "Baton <baton@notify.example.com>",
                              timeout=10)
        await send(channel, 0, WARM_UP)
        sender, sunk = own_cpu(), cpu_of(sink.pid)
        await send(channel, WARM_UP, count)
        sender, sunk = own_cpu() - sender, cpu_of(sink.pid) - sunk
        await channel.aclose()
        assert sink.messages == WARM_UP + count, sink.messages
        print(f"sender {sender * 1e6 / count:.1f} µs per mail, "
              f"sink {sunk * 1e6 / count:.1f} µs per mail ({count} mails)")
    finally:
        sink.stop()


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    uvloop.install()
    asyncio.run(main(numbers[0] if numbers else 4000, "--no-pipelining" not in sys.argv))
