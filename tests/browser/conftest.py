"""Browser tests: the Work Guide's pages in Debian's headless Chromium, driven by Playwright.

No browser is downloaded: Playwright launches /usr/bin/chromium (``make browser`` installs
it with apt-get when it is missing).  The stack is the e2e one (five service processes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from e2e.conftest import admin, mongo, stack, stack_env  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def chromium_path() -> str:
    assert CHROMIUM.exists(), "Chromium is missing: run `make browser` (apt-get install chromium)"
    return str(CHROMIUM)


@pytest.fixture(scope="module")
async def chromium(chromium_path: str) -> AsyncIterator[Any]:
    """One headless Chromium for the module; each test opens its own contexts (people)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium_path,
                                                   args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()
