"""Helpers for the observability e2e modules: people, a stuck run, and reading /metrics."""

from __future__ import annotations

from typing import Any

import httpx
import yaml
from e2e.conftest import ADMIN_TOKEN, ROOT, wait_for
from prometheus_client.parser import text_string_to_metric_families

from infra.stack import ServiceStack

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def token_for(client: httpx.AsyncClient, stack: ServiceStack, user: str) -> dict[str, str]:
    """The example directory loaded, and a bearer token for ``user``."""
    url = stack.url("assignment")
    directory = yaml.safe_load((ROOT / "examples" / "directory.yaml").read_text())
    loaded = await client.put(f"{url}/directory", json=directory, headers=ADMIN)
    assert loaded.status_code == 200, loaded.text
    issued = await client.post(f"{url}/tokens", json={"user_id": user}, headers=ADMIN)
    assert issued.status_code == 201, issued.text
    return {"Authorization": f"Bearer {issued.json()['token']}"}


async def start_run(client: httpx.AsyncClient, stack: ServiceStack, definition: str,
                    name: str) -> str:
    trigger = stack.url("trigger")
    published = await client.post(f"{trigger}/definitions", content=definition, headers=ADMIN)
    assert published.status_code == 201, published.text
    started = await client.post(f"{trigger}/runs", json={"orchestration": name}, headers=ADMIN)
    assert started.status_code == 202, started.text
    run_id: str = started.json()["run_id"]
    return run_id


async def open_item(client: httpx.AsyncClient, stack: ServiceStack, who: dict[str, str],
                    run_id: str) -> dict[str, Any]:
    url = stack.url("assignment")

    async def found() -> dict[str, Any] | None:
        response = await client.get(f"{url}/work", headers=who)
        assert response.status_code == 200, response.text
        return next((i for i in response.json() if i["run_id"] == run_id), None)

    item: dict[str, Any] = await wait_for(found, timeout=30)
    return item


async def complete(client: httpx.AsyncClient, stack: ServiceStack, who: dict[str, str],
                   item_id: str) -> None:
    url = stack.url("assignment")
    claimed = await client.post(f"{url}/work/{item_id}/claim", headers=who)
    assert claimed.status_code == 200, claimed.text
    done = await client.post(f"{url}/work/{item_id}/complete", json={"values": {}}, headers=who)
    assert done.status_code == 200, done.text


async def run_status(client: httpx.AsyncClient, stack: ServiceStack, run_id: str) -> str:
    response = await client.get(f"{stack.url('stage-coordinator')}/runs/{run_id}", headers=ADMIN)
    return str(response.json().get("status")) if response.status_code == 200 else ""


class Scrape:
    """One /metrics answer: samples by name and labels, and the raw text."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.samples.setdefault(sample.name, []).append((sample.labels, sample.value))

    def value(self, name: str, **labels: str) -> float | None:
        """The value of the one sample whose labels include these; None when there is none."""
        found = [v for have, v in self.samples.get(name, [])
                 if all(have.get(k) == want for k, want in labels.items())]
        assert len(found) <= 1, (name, labels, found)
        return found[0] if found else None

    def label_values(self) -> set[str]:
        return {v for samples in self.samples.values() for labels, _ in samples
                for v in labels.values()}


async def scrape(client: httpx.AsyncClient, stack: ServiceStack, service: str) -> Scrape:
    response = await client.get(f"{stack.url(service)}/metrics")
    assert response.status_code == 200, response.text
    return Scrape(response.text)
