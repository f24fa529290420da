"""A fleet on loopback: real `gesturert serve` processes behind the shipped HAProxy and
nginx configurations (deploy/), checked end to end.

* every connection's frames equal what `gesturert stream` writes for its audio and seed;
* connections without a speaker key spread over the backends; the same key always lands
  on the same backend;
* SIGKILL of one backend: its clients see the connection close without a close frame
  (1006), clients on the other backends finish untouched, new connections succeed;
* SIGTERM of one backend: a stream that ends within the drain bound gets all its frames
  and its end message, one that runs longer gets error `shutting_down` and close 1001, the
  process exits 0 within the bound; new connections meanwhile go to the other backends
  (the draining one answers their handshake 503, which the balancer retries elsewhere)
  and HAProxy's health check marks the draining backend down.

Servers use the shipped default bundle on the CPU; every wait is bounded and every
process is stopped by its PID in teardown.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from helpers_fleet import balancer_missing, haproxy_server_status, wait_for
from helpers_fleet_client import (
    Fleet,
    FleetClient,
    Outcome,
    clients_on_each_backend,
    start_fleet,
    wait_frames,
)

from sdk.audio import load_audio
from sdk.cli import main as gesturert
from sdk.demo import DEFAULT_BUNDLE, SPEECH_SAMPLE
from sdk.frames import PoseFrames

RATE = 16000
# nginx spreads keyless connections at random ($request_id): with 30 connections over 3
# backends one is missed with probability 3 * (2/3)^30 = 1.5e-5. HAProxy: round robin.
SPREAD_CONNECTIONS = 30
# 12 keys over 3 backends all hash to one with probability 3 * (1/3)^12 = 6e-6 (nginx's
# ring depends on the backends' random ports).
SPEAKERS = tuple(f"speaker{k}" for k in range(12))
TOLERANCE_PX = 1e-3


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """The shipped speech sample at 16 kHz, float32 (N,)."""
    return load_audio(SPEECH_SAMPLE).astype(np.float32)


def clip(speech: np.ndarray, start_s: float, seconds: float) -> np.ndarray:
    return speech[int(start_s * RATE):int((start_s + seconds) * RATE)]


_REFERENCES: dict[tuple[bytes, int], PoseFrames] = {}


def stream_reference(audio: np.ndarray, seed: int, workdir: Path) -> PoseFrames:
    """What `gesturert stream` writes for ``audio`` and ``seed`` (cached per run)."""
    import soundfile

    key = (audio.tobytes()[:4096] + str(len(audio)).encode(), seed)
    if key not in _REFERENCES:
        workdir.mkdir(parents=True, exist_ok=True)
        wav, out = workdir / f"ref_{len(_REFERENCES)}.wav", workdir / f"ref_{len(_REFERENCES)}.npz"
        soundfile.write(wav, audio, RATE, subtype="FLOAT")
        code = gesturert(["stream", str(DEFAULT_BUNDLE), str(wav), "--out", str(out),
                          "--seed", str(seed), "--backend", "onnxruntime-cpu"])
        assert code == 0
        with np.load(out) as npz:
            _REFERENCES[key] = PoseFrames(npz["keypoints"], npz["saliency"], npz["time"],
                                          npz["index"])
    return _REFERENCES[key]


def assert_prefix_of(got: PoseFrames, reference: PoseFrames, whole: bool) -> None:
    """``got`` is ``reference`` (``whole``) or its first frames, within TOLERANCE_PX."""
    if whole:
        assert len(got) == len(reference), f"{len(got)} frames, `stream` wrote {len(reference)}"
    assert len(got) <= len(reference)
    np.testing.assert_array_equal(got.index, reference.index[:len(got)])
    np.testing.assert_allclose(got.keypoints, reference.keypoints[:len(got)], atol=TOLERANCE_PX,
                               rtol=0)
    np.testing.assert_allclose(got.saliency, reference.saliency[:len(got)], atol=1e-5, rtol=0)


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 120))  # type: ignore[arg-type]


def _need(balancer: str) -> None:
    reason = balancer_missing(balancer)
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module", params=["haproxy", "nginx"])
def fleet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    """Three servers behind the balancer, shared by the tests that stop nothing."""
    _need(request.param)
    running = start_fleet(tmp_path_factory.mktemp(f"fleet_{request.param}"), request.param, 3)
    try:
        yield running
    finally:
        running.stop()


def test_every_connection_gets_the_frames_gesturert_stream_writes(
        fleet: Fleet, speech: np.ndarray, tmp_path: Path) -> None:
    jobs = [(clip(speech, 0.0, 2.0), 0), (clip(speech, 3.0, 2.5), 7), (clip(speech, 6.0, 1.5), 3),
            (clip(speech, 0.0, 2.0), 0)]

    async def scenario() -> list[Outcome]:
        clients = [FleetClient(fleet.url()) for _ in jobs]
        for client, (_, seed) in zip(clients, jobs, strict=True):
            await client.open(seed)
        return await asyncio.gather(*(c.stream(audio, realtime=False)
                                      for c, (audio, _) in zip(clients, jobs, strict=True)))

    outcomes = run(scenario())
    assert isinstance(outcomes, list)
    for outcome, (audio, seed) in zip(outcomes, jobs, strict=True):
        assert outcome.error is None and outcome.end is not None and outcome.close_code == 1000
        assert_prefix_of(outcome.frames, stream_reference(audio, seed, tmp_path), whole=True)
        fleet.name_of(outcome.backend)  # served by one of the fleet's processes


def test_connections_without_a_key_spread_and_a_speaker_key_sticks(fleet: Fleet) -> None:
    async def backend_of(url: str) -> str:
        client = FleetClient(url)
        await client.open(seed=0)
        assert client.ws is not None
        await client.ws.close()
        return fleet.name_of(client.backend)

    async def scenario() -> tuple[list[str], dict[str, list[str]]]:
        spread = [await backend_of(fleet.url()) for _ in range(SPREAD_CONNECTIONS)]
        sticky = {key: [await backend_of(fleet.url(key)) for _ in range(3)]
                  for key in SPEAKERS}
        return spread, sticky

    result = run(scenario())
    assert isinstance(result, tuple)
    spread, sticky = result
    assert set(spread) == set(fleet.servers), f"connections without a key went to {spread}"
    for key, names in sticky.items():
        assert len(set(names)) == 1, f"speaker {key!r} reached {names}"
    assert len({names[0] for names in sticky.values()}) >= 2, sticky  # keys spread too


@pytest.mark.parametrize("balancer", ["haproxy", "nginx"])
def test_a_killed_backend_closes_its_clients_only_and_new_connections_succeed(
        balancer: str, speech: np.ndarray, tmp_path: Path) -> None:
    _need(balancer)
    fleet = start_fleet(tmp_path / "fleet", balancer, 2)
    audio, seed = clip(speech, 1.0, 3.0), 5
    try:
        async def scenario() -> tuple[list[Outcome], str, list[str]]:
            clients = await clients_on_each_backend(fleet, 2, seed)
            tasks = [asyncio.create_task(c.stream(audio, realtime=True)) for c in clients]
            await wait_frames(clients, 3)
            victim = fleet.name_of(clients[0].backend)
            fleet.servers[victim].send(signal.SIGKILL)
            fleet.servers[victim].wait(10)
            outcomes = await asyncio.gather(*tasks)
            fresh = []
            for _ in range(4):  # a dead backend costs new connections nothing
                client = FleetClient(fleet.url())
                await client.open(seed)
                fresh.append(fleet.name_of(client.backend))
                outcome = await client.stream(clip(speech, 0.0, 0.5), realtime=False)
                assert outcome.end is not None, outcome
            return outcomes, victim, fresh

        result = run(scenario())
        assert isinstance(result, tuple)
        outcomes, victim, fresh = result
        reference = stream_reference(audio, seed, tmp_path)
        on_victim = [o for o in outcomes if fleet.name_of(o.backend) == victim]
        others = [o for o in outcomes if fleet.name_of(o.backend) != victim]
        assert on_victim and others, "both backends must have held clients"
        for outcome in on_victim:
            assert outcome.end is None and outcome.close_code == 1006, outcome.close_code
            assert_prefix_of(outcome.frames, reference, whole=False)
        for outcome in others:
            assert outcome.end is not None and outcome.close_code == 1000
            assert_prefix_of(outcome.frames, reference, whole=True)
        assert victim not in fresh
    finally:
        fleet.stop()


@pytest.mark.parametrize("balancer", ["haproxy", "nginx"])
def test_sigterm_drains_with_1001_and_the_balancer_stops_routing_to_it(
        balancer: str, speech: np.ndarray, tmp_path: Path) -> None:
    _need(balancer)
    drain_s = 2.5
    fleet = start_fleet(tmp_path / "fleet", balancer, 2, drain_seconds=drain_s)
    short, long_, seed = clip(speech, 0.0, 1.5), clip(speech, 2.0, 8.0), 2
    try:
        async def scenario() -> tuple[dict[str, list[tuple[str, Outcome]]], str, list[str],
                                      float]:
            victim = ""
            clients: list[FleetClient] = []
            kinds: list[str] = []  # the victim gets a short and a long stream, the other a short
            for _ in range(20):
                client = FleetClient(fleet.url())
                await client.open(seed)
                name = fleet.name_of(client.backend)
                victim = victim or name
                have = [k for c, k in zip(clients, kinds, strict=True)
                        if fleet.name_of(c.backend) == name]
                wanted = ["short", "long"] if name == victim else ["short"]
                if len(have) < len(wanted):
                    clients.append(client)
                    kinds.append(wanted[len(have)])
                else:
                    assert client.ws is not None
                    await client.ws.close()
                if len(clients) == 3:
                    break
            assert len(clients) == 3, f"20 connections reached only {victim}"
            tasks = [asyncio.create_task(c.stream(short if k == "short" else long_))
                     for c, k in zip(clients, kinds, strict=True)]
            await wait_frames(clients, 2)
            fleet.servers[victim].send(signal.SIGTERM)
            term_at = time.monotonic()
            await asyncio.sleep(0.3)
            fresh = []
            for _ in range(4):  # while it drains: routed elsewhere, no failure
                client = FleetClient(fleet.url())
                await client.open(seed)
                fresh.append(fleet.name_of(client.backend))
                assert client.ws is not None
                await client.ws.close()
            outcomes = await asyncio.gather(*tasks)
            by_kind: dict[str, list[tuple[str, Outcome]]] = {"short": [], "long": []}
            for kind, outcome in zip(kinds, outcomes, strict=True):
                by_kind[kind].append((fleet.name_of(outcome.backend), outcome))
            return by_kind, victim, fresh, term_at

        result = run(scenario())
        assert isinstance(result, tuple)
        by_kind, victim, fresh, term_at = result
        if fleet.stats_port is not None:  # HAProxy's health check (nginx has none)
            wait_for(lambda: haproxy_server_status(fleet.stats_port or 0).get(
                victim, "").startswith("DOWN"), 10, f"HAProxy to mark {victim} down")
        assert fleet.servers[victim].wait(drain_s + 10) == 0
        assert time.monotonic() - term_at < drain_s + 10
        assert victim not in fresh, fresh
        for name, outcome in by_kind["short"]:  # ended within the bound: complete
            assert outcome.end is not None and outcome.close_code == 1000, (name, outcome)
            assert_prefix_of(outcome.frames, stream_reference(short, seed, tmp_path), whole=True)
        [(name, cut)] = by_kind["long"]
        assert name == victim and cut.end is None
        assert cut.close_code == 1001 and cut.error is not None
        assert cut.error["code"] == "shutting_down"
        assert len(cut.frames) > 0
        assert_prefix_of(cut.frames, stream_reference(long_, seed, tmp_path), whole=False)
    finally:
        fleet.stop()
