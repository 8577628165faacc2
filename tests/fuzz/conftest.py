"""The fuzz tests run against the same five-service stack as the e2e tests."""

from e2e.conftest import admin, mongo, stack, stack_env  # noqa: F401
