"""Headless Chromium driven over the DevTools protocol on a pipe (no port, no network).

Used by the report tests to load a page as a person's browser would, read what loaded
(sections, images and their natural sizes, every request the page made) and take a
full-page screenshot. Needs Debian's ``chromium``; :func:`chromium_or_skip` installs it
with apt-get when missing and we are root, and skips the test with the reason otherwise.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-pipe"]


def chromium_or_skip() -> str:
    """Path of the chromium binary; installs Debian's package when missing (root only)."""
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    why = None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        why = "not root or no apt-get"
    else:
        try:
            env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
            subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
        except (subprocess.SubprocessError, OSError) as e:
            try:
                subprocess.run(["apt-get", "update", "-q"], check=True, timeout=300,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=True,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=900)
            except (subprocess.SubprocessError, OSError) as e2:
                why = f"apt-get install chromium failed: {e}; after apt-get update: {e2}"
    path = shutil.which("chromium")
    if path:
        return path
    pytest.skip(f"headless Chromium (Debian's `chromium`) is not installed and could not be "
                f"installed ({why}): the report's browser test cannot run here")


class Browser:
    """One headless Chromium with one page, spoken to over --remote-debugging-pipe."""

    def __init__(self, binary: str, width: int = 1280, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="replenish-chromium-")
        cmd_r, self._cmd_w = os.pipe()      # we write commands, chromium reads fd 3
        self._out_r, out_w = os.pipe()      # chromium writes fd 4, we read
        # the child's ends become its fds 3 and 4 (copied to high numbers first, so that no
        # dup2 clobbers the other; 3 and 4 are in pass_fds: subprocess closes the others
        # after preexec_fn)
        hi_r, hi_w = os.dup(cmd_r) + 100, os.dup(out_w) + 100
        os.dup2(cmd_r, hi_r)
        os.dup2(out_w, hi_w)

        def child():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
             "about:blank"], pass_fds=(3, 4, hi_r, hi_w), preexec_fn=child,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (cmd_r, out_w, hi_r, hi_w):
            os.close(fd)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []
        self.width = width
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime"):
            self.call(f"{domain}.enable", session=True)

    def _read(self, timeout: float) -> dict:
        end = time.monotonic() + timeout
        while b"\0" not in self._buf:
            left = end - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise TimeoutError("chromium did not answer")
            ready, _, _ = select.select([self._out_r], [], [], left)
            if ready:
                chunk = os.read(self._out_r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed its pipe")
                self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, session: bool = False, timeout: float = 60, **params):
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            got = self._read(timeout)
            if got.get("id") == self._id:
                if "error" in got:
                    raise RuntimeError(f"{method}: {got['error']}")
                return got.get("result", {})
            self.events.append(got)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        for i, e in enumerate(self.events):
            if e.get("method") == method:
                return self.events.pop(i)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = self._read(end - time.monotonic())
            if got.get("method") == method:
                return got
            self.events.append(got)
        raise TimeoutError(f"no {method} event")

    def open(self, path: Path) -> None:
        self.events.clear()
        self.call("Page.navigate", session=True, url=Path(path).resolve().as_uri())
        self.wait_event("Page.loadEventFired")

    def evaluate(self, expression: str):
        res = self.call("Runtime.evaluate", session=True, expression=expression,
                        returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def requests(self) -> list[str]:
        """URLs of every request the page made since it was opened."""
        return [e["params"]["request"]["url"] for e in self.events
                if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> Path:
        """A full-page PNG screenshot."""
        size = self.call("Page.getLayoutMetrics", session=True)["cssContentSize"]
        height = int(size["height"]) + 1
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=self.width,
                  height=height, deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)
        Path(path).write_bytes(base64.b64decode(shot["data"]))
        return Path(path)

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._cmd_w, self._out_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False
