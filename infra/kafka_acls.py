"""Kafka ACLs from the topic list: each service may write and read only what it needs.

    python -m infra.kafka_acls --print                  # kafka-acls.sh commands, to review
    python -m infra.kafka_acls --apply [--create-topics] # as an admin (BATON_KAFKA_* settings)

``contracts/topics.py`` names the producers and consumers of every topic.  Each service is
its own principal (``User:<service>``, or ``--prefix`` before the name); it gets WRITE on the
topics it produces, READ on those it consumes, DESCRIBE on both, and READ on the consumer
groups named after it (its name, or its name and a suffix: the coordinator reads the offsets
of ``stage-coordinator-participants``, which read ``workitems.events`` before decision 20).
Outside parties get ACLs only when their principal is given (``--upstream``,
``--operators``).  With WRITE on a topic, Kafka (3.0 and newer) also lets the principal's
producer be idempotent, so no cluster-wide right is granted.  ``--allow-create`` adds CREATE
on each service's own topics, for clusters where the services create their topics.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, replace
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import CreateAclsRequest

from contracts.topics import OPERATORS, SERVICES, TOPICS, UPSTREAM
from shared.kafka_connection import client_options
from shared.settings import ServiceSettings
from shared.topics import TopicPolicy, ensure_topics

# Kafka's wire codes (org.apache.kafka.common.acl / resource).
TOPIC, GROUP = 2, 3
LITERAL, PREFIXED = 3, 4
READ, WRITE, CREATE, DESCRIBE = 3, 4, 5, 8
ALLOW = 3
OPERATIONS = {READ: "Read", WRITE: "Write", CREATE: "Create", DESCRIBE: "Describe"}


@dataclass(frozen=True, order=True)
class Acl:
    principal: str
    resource_type: int
    resource: str
    operation: int
    pattern: int = LITERAL

    def command(self) -> str:
        kind = "--topic" if self.resource_type == TOPIC else "--group"
        pattern = " --resource-pattern-type prefixed" if self.pattern == PREFIXED else ""
        return (f"kafka-acls.sh --bootstrap-server $BOOTSTRAP --command-config admin.properties "
                f"--add --allow-principal {self.principal} "
                f"--operation {OPERATIONS[self.operation]} {kind} {self.resource}{pattern}")


def acls(principals: dict[str, str], *, allow_create: bool = False) -> list[Acl]:
    """The ACLs for the parties in ``principals`` (a party name to its Kafka principal)."""
    wanted: set[Acl] = set()
    for topic in TOPICS:
        for party, principal in principals.items():
            writes, reads = party in topic.producers, party in topic.consumers
            if writes:
                wanted.add(Acl(principal, TOPIC, topic.name, WRITE))
            if reads:
                wanted.add(Acl(principal, TOPIC, topic.name, READ))
            if writes or reads:
                wanted.add(Acl(principal, TOPIC, topic.name, DESCRIBE))
                if allow_create and party in SERVICES:
                    wanted.add(Acl(principal, TOPIC, topic.name, CREATE))
    for party, principal in principals.items():
        if party in SERVICES and any(party in t.consumers for t in TOPICS):
            wanted.add(Acl(principal, GROUP, party, READ, PREFIXED))
    return sorted(wanted)


def principals(prefix: str = "", upstream: str | None = None,
               operators: str | None = None) -> dict[str, str]:
    found = {service: f"User:{prefix}{service}" for service in SERVICES}
    if upstream:
        found[UPSTREAM] = upstream
    if operators:
        found[OPERATORS] = operators
    return found


class AclRefused(RuntimeError):
    pass


async def apply(options: dict[str, Any], wanted: list[Acl]) -> None:
    """Create the ACLs (creating one that exists changes nothing)."""
    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    await admin.start()
    try:
        for acl in wanted:
            request = CreateAclsRequest(acl.resource_type, acl.resource, acl.pattern,
                                        acl.principal, "*", acl.operation, ALLOW)
            # aiokafka builds and sends CreateAcls but has no public method for it yet.
            response = await admin._send_request(request)
            for code, message in response.creation_responses:
                if code:
                    raise AclRefused(f"{acl}: error {code} {message or ''}")
    finally:
        await admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.kafka_acls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--print", action="store_true", help="print kafka-acls.sh commands")
    action.add_argument("--apply", action="store_true", help="create the ACLs on the cluster")
    parser.add_argument("--prefix", default="", help="before each service's user name")
    parser.add_argument("--upstream", help="principal of the upstream systems, e.g. User:crm")
    parser.add_argument("--operators", help="principal that reads the dead letters")
    parser.add_argument("--allow-create", action="store_true",
                        help="let each service create its own topics")
    parser.add_argument("--create-topics", action="store_true",
                        help="with --apply: create every topic first (as the admin)")
    args = parser.parse_args(argv)
    wanted = acls(principals(args.prefix, args.upstream, args.operators),
                  allow_create=args.allow_create)
    if args.print:
        print("\n".join(acl.command() for acl in wanted))
        return 0
    settings = ServiceSettings(service_name="baton-admin")
    options = client_options(settings)
    if args.create_topics:
        policy = replace(TopicPolicy.of(settings), create=True)
        created = asyncio.run(ensure_topics(options, TOPICS, policy))
        print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    asyncio.run(apply(options, wanted))
    print(f"{len(wanted)} ACLs in place for {len({a.principal for a in wanted})} principals")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
