"""What `gesturert serve` tells a fleet: which process serves (handshake header), liveness
apart from readiness (/livez stays 200 while /healthz says draining), and a handshake
refused with HTTP 503 while draining (so a balancer retries it elsewhere)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator

import pytest
from helpers_live import ServerThread, http_get
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from sdk.live.config import ServerConfig
from sdk.live.fleet import BACKEND_HEADER, LIVE_PATH, READY_PATH, backend_id


@pytest.fixture
def server() -> Iterator[ServerThread]:
    srv = ServerThread(ServerConfig(port=0, drain_seconds=5.0))
    try:
        yield srv
    finally:
        srv.stop()


async def _handshake(url: str) -> str:
    async with connect(url, open_timeout=10) as ws:
        return str(ws.response.headers[BACKEND_HEADER])


def test_the_handshake_names_this_process(server: ServerThread) -> None:
    backend = asyncio.run(_handshake(server.url + "?speaker=alice"))
    assert backend == backend_id() and backend.endswith(f":{os.getpid()}")


def test_draining_refuses_the_handshake_with_503_while_liveness_stays_200(
        server: ServerThread) -> None:
    assert http_get(server.http + READY_PATH)[0] == 200
    assert http_get(server.http + LIVE_PATH)[0] == 200

    def begin_drain() -> None:
        server.server.draining = True

    server.call(begin_drain)
    status, body = http_get(server.http + READY_PATH)
    assert status == 503 and json.loads(body)["status"] == "draining"
    status, body = http_get(server.http + LIVE_PATH)
    assert status == 200 and json.loads(body)["backend"] == backend_id()
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_handshake(server.url))
    assert refused.value.response.status_code == 503
    assert b"draining" in refused.value.response.body
