"""CPU per ``POST /work/{id}/complete`` through the assignment service's HTTP app.

Not a test: a measuring tool for decision 39 (docs/benchmarks.md, the spine's ninth part).
It wires the Work Guide's router, the request guard and the lean completion path as the
service's ``build()`` does, over a Work Guide in memory (the act itself is not measured),
sends ``count`` completions through the ASGI callable as uvicorn would, and prints the CPU
per request.  ``--no-lean-path`` leaves the lean path out (FastAPI answers every request).
Run it alone, alternating:

    .venv/bin/python -m tests.bench.completion_cost [count] [--no-lean-path]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from services.assignment.api import work_router
from services.assignment.completing import CompletionFastPath
from services.assignment.core import Claim, Directory
from services.assignment.core.commands import Command
from services.assignment.guide import Outcome
from shared.auth import UNKNOWN, Authenticator, Principal, hash_token
from shared.runtime import Runtime
from shared.settings import ServiceSettings

sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "assignment"))
from assignment_builders import DIRECTORY, given, request

ITEM = given(request("group", "hr", record={"id": "r-1", "amount": 120}), Claim("ann"))
TOKEN = "t-ann"
ANN = Principal("ann", groups=frozenset({"hr"}))
BODY = b'{"values": {"approved": true, "note": "fine"}}'
PATH = "/work/run-1:legal:1/complete"


class Access:
    async def resolve(self, digest: str, *, catch_up: bool = True
                      ) -> tuple[None, Principal | str]:
        return (None, ANN) if digest == hash_token(TOKEN) else (None, UNKNOWN)


class Guide:
    async def directory_for(self, who: Principal) -> Directory:
        directory: Directory = DIRECTORY
        return directory

    async def act(self, item_id: str, command: Command, directory: Directory) -> Outcome:
        return Outcome(ITEM)


def app(lean: bool) -> Any:
    runtime = Runtime(ServiceSettings(service_name="assignment"), title="bench",
                      default_port=1)
    guide, auth = Guide(), Authenticator(Access(), None)
    runtime.http.include_router(work_router(guide, auth))  # type: ignore[arg-type]
    if lean:
        runtime.add_guarded_middleware(CompletionFastPath, guide=guide, auth=auth)
    return runtime.http


def scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1", "method": "POST", "scheme": "http", "path": PATH,
            "raw_path": PATH.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8104"), (b"accept", b"*/*"),
                        (b"authorization", f"Bearer {TOKEN}".encode()),
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(BODY)).encode())],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8104), "state": {}}


async def complete(asgi: Any) -> int:
    given_body = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal given_body
        if not given_body:
            given_body = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)  # the client never disconnects here
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        status = message.get("status", status)

    await asgi(scope(), receive, send)
    return status


async def main(count: int, lean: bool) -> None:
    asgi = app(lean)
    for _ in range(200):  # warm: caches, the first token check
        assert await complete(asgi) == 200
    began = time.process_time()
    for _ in range(count):
        await complete(asgi)
    spent = time.process_time() - began
    print(f"{'lean path' if lean else 'FastAPI only'}: {spent * 1e6 / count:.1f} µs of CPU "
          f"per completion ({count} requests)")


if __name__ == "__main__":
    numbers = [int(a) for a in sys.argv[1:] if a.isdigit()]
    asyncio.run(main(numbers[0] if numbers else 5000, "--no-lean-path" not in sys.argv))
