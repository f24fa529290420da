"""The live page in a real browser: headless Chromium, a fake microphone fed from a wav.

Chromium is driven over the raw DevTools protocol (its WebSocket, through the
``websockets`` client the live extra brings): no Playwright, no chromedriver. Debian's
``chromium`` comes from ``make debs`` (part of ``make test``); without it the test
skips with that reason. Set ``GESTURERT_WRITE_SCREENSHOT=1`` to refresh
docs/img/live_page.png from this run.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from helpers_live import ServerThread, robust_slope
from websockets.asyncio.client import connect

from sdk.audio import resample
from sdk.render import BACKGROUND

CHROMIUM = shutil.which("chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "img" / "live_page.png"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
         "--window-size=700,800"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                 "(`make debs`, part of `make test`, installs it)")

# Pixels of the canvas that differ from the background by more than 8 in some channel.
DRAWN_PIXELS_JS = """(() => {
  const c = document.getElementById('canvas');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const bg = BACKGROUND; let n = 0;
  for (let i = 0; i < d.length; i += 4)
    if (Math.abs(d[i]-bg[0]) > 8 || Math.abs(d[i+1]-bg[1]) > 8 || Math.abs(d[i+2]-bg[2]) > 8) n++;
  return [n, c.width * c.height];
})()""".replace("BACKGROUND", json.dumps(list(BACKGROUND)))

LIVE_STATE_JS = ("JSON.stringify(window.__live || "
                 "{framesReceived: 0, error: null, state: 'loading'})")


class DevTools:
    """Minimal Chrome DevTools protocol client: one page target, request/response by id."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        number = next(self.ids)
        await self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            reply = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if reply.get("id") == number:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return dict(reply["result"])

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


def devtools_page_url(profile: Path, page: str, timeout: float = 60.0) -> str:
    """The DevTools WebSocket URL of the tab showing ``page`` (Chromium writes its port to
    DevToolsActivePort in the profile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        port_file = profile / "DevToolsActivePort"
        if port_file.exists() and port_file.read_text().strip():
            port = port_file.read_text().split()[0]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as reply:
                for target in json.load(reply):
                    if target.get("type") == "page" and target["url"].startswith(page):
                        return str(target["webSocketDebuggerUrl"])
        time.sleep(0.2)
    raise AssertionError(f"chromium showed no page {page} within {timeout} s")


def test_page_streams_the_fake_microphone_and_draws_the_skeleton(
        tmp_path: Path, speech_16k: np.ndarray) -> None:
    wav = tmp_path / "speech.wav"  # the fake device runs at 44.1 kHz; the page asks 16 kHz
    soundfile.write(wav, resample(speech_16k[: 10 * 16000], 16000, 44100), 44100,
                    subtype="PCM_16")
    server = ServerThread()
    profile = tmp_path / "profile"
    page = f"{server.http}/?autostart=mic"
    assert CHROMIUM is not None
    browser = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}",
         f"--use-file-for-fake-audio-capture={wav}", page],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        report = asyncio.run(drive(devtools_page_url(profile, server.http), tmp_path))
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()
        stats = server.stats()
        server.stop()
    live, rate, drawn, total, text = report
    assert live["error"] is None and live["state"] == "ended", live
    assert 14.0 <= rate <= 16.0, f"the page received {rate:.2f} frames/s, expected 15 +- 1"
    assert 14.0 <= live["fps"] <= 16.0, live  # while streaming
    algorithmic_ms = server.generator.algorithmic_latency_seconds * 1e3
    assert algorithmic_ms < live["latencyP50"] < algorithmic_ms + 1000, live
    assert "speech-to-pose latency p50" in text and " ms" in text
    assert 300 < drawn < total // 2, f"{drawn} of {total} canvas pixels differ from the background"
    assert live["end"]["frames"] == live["framesReceived"] >= 60
    assert stats["streams_open"] == 0


async def drive(url: str, tmp_path: Path) -> tuple[dict[str, Any], float, int, int, str]:
    """Wait for 45+ frames, measure the rate over 3 s, check the canvas, screenshot, stop."""
    async with connect(url, max_size=None, compression=None) as ws:
        tab = DevTools(ws)

        async def state() -> dict[str, Any]:
            return dict(json.loads(await tab.evaluate(LIVE_STATE_JS)))

        deadline = time.monotonic() + 60
        live = await state()
        while live["framesReceived"] < 45:  # 3 s of frames: warm
            assert time.monotonic() < deadline and not live["error"], live
            await asyncio.sleep(0.25)
            live = await state()
        # frames received against time over 3 s, sampled every 0.25 s; the rate is their
        # robust slope (one stall of a loaded machine, caught up, bends few pairs)
        times, counts = [time.monotonic()], [live["framesReceived"]]
        while times[-1] - times[0] < 3.0:
            await asyncio.sleep(0.25)
            live = await state()
            times.append(time.monotonic())
            counts.append(live["framesReceived"])
        rate = robust_slope(np.array(counts), np.array(times))
        page_fps = live["fps"]  # the page's own figure, before the end's tail burst
        drawn, total = await tab.evaluate(DRAWN_PIXELS_JS)
        text = await tab.evaluate("document.getElementById('stats').textContent")
        shot = await tab.call("Page.captureScreenshot", format="png")
        png = base64.b64decode(shot["data"])
        (tmp_path / "live_page.png").write_bytes(png)
        if os.environ.get("GESTURERT_WRITE_SCREENSHOT") == "1":
            SCREENSHOT.write_bytes(png)
        await tab.evaluate("document.getElementById('stop').click()")
        deadline = time.monotonic() + 20
        live = await state()
        while live["state"] != "ended":
            assert time.monotonic() < deadline, live
            await asyncio.sleep(0.1)
            live = await state()
        return {**live, "fps": page_fps}, rate, int(drawn), int(total), str(text)
