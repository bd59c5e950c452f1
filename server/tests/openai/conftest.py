"""Fixtures for the end-to-end tests of `strata serve`: one shared server,
and separate instances for the tests that need special flags (a small
context, one slot, a queue limit, an API key). See helpers.py for how a
server is started and stopped and for the environment it reads."""

import pytest

from helpers import API_KEY, Server


def _serve(*flags, api_key=None):
    server = Server(*flags, api_key=api_key)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server():
    """The shared server: 8 slots (the concurrency test runs 8 at once)."""
    yield from _serve("--parallel", "8", "-c", "2048")


@pytest.fixture(scope="session")
def client(server):
    c = server.client()
    yield c
    c.close()


@pytest.fixture(scope="session")
def model(server):
    return server.model_id()


@pytest.fixture(scope="module")
def small_ctx_server():
    """A 256-position context, for prompts that are too long and for
    max_tokens beyond the context."""
    yield from _serve("-c", "256", "--parallel", "2")


@pytest.fixture(scope="module")
def one_slot_server():
    """One slot: a request that is not released blocks every other."""
    yield from _serve("--parallel", "1", "-c", "4096")


@pytest.fixture(scope="module")
def queue_server():
    """One slot and one queue place: a third request at once is refused."""
    yield from _serve("--parallel", "1", "--max-queue", "1", "-c", "1024")


@pytest.fixture(scope="module")
def auth_server():
    yield from _serve("--parallel", "1", "-c", "512", api_key=API_KEY)
