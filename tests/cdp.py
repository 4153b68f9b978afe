"""A small Chrome DevTools Protocol client for the UI tests: headless Chromium (Debian's `chromium`), driven over
its DevTools websocket with the `websockets` package the webserver already depends on (through uvicorn), so the
tests need no browser download and no driver. Only what the tests use: open a page, evaluate JavaScript in it, wait
for a condition on the DOM.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any, Self

import requests

# flags that work on a CI machine without a display, a GPU, a sandbox or network access
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
DEVTOOLS_LINE = re.compile(r"DevTools listening on (ws://127\.0\.0\.1:(\d+)/\S+)")


def chromium_executable() -> str | None:
    """Debian's chromium (or chromium-browser / google-chrome on other systems), or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class CdpError(RuntimeError):
    pass


class Browser:
    """A headless Chromium process with one page, controlled over the DevTools protocol. Use as a context
    manager: the process (and its fresh profile directory) is removed on exit."""

    def __init__(self, executable: str, timeout_s: float = 60.0):
        self.executable = executable
        self.timeout_s = timeout_s
        self._ids = itertools.count(1)
        self._profile = tempfile.mkdtemp(prefix="impact-chromium-")
        self._proc: subprocess.Popen | None = None
        self._ws: Any = None
        self._stack = contextlib.ExitStack()
        self.console_errors: list[str] = []

    def __enter__(self) -> Self:
        from websockets.sync.client import connect

        self._proc = subprocess.Popen(
            [self.executable, *CHROMIUM_FLAGS, f"--user-data-dir={self._profile}", "--remote-debugging-port=0",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
            start_new_session=True,
        )  # fmt: skip
        port = self._devtools_port()
        deadline = time.monotonic() + self.timeout_s
        while True:  # the first page target appears shortly after the browser's endpoint
            pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                     if t.get("type") == "page"]  # fmt: skip
            if pages or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not pages:
            raise CdpError("chromium started but shows no page")
        self._ws = self._stack.enter_context(
            connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout_s)
        )
        self.send("Page.enable")
        self.send("Runtime.enable")
        # a tall viewport: the lineage graph only draws the nodes inside it
        self.send("Emulation.setDeviceMetricsOverride", width=2400, height=3000, deviceScaleFactor=1, mobile=False)
        return self

    def _devtools_port(self) -> int:
        """The port chromium chose, from the 'DevTools listening on ws://...' line it prints to stderr."""
        assert self._proc is not None and self._proc.stderr is not None
        deadline = time.monotonic() + self.timeout_s
        seen = []
        while time.monotonic() < deadline:
            line = self._proc.stderr.readline()
            if not line:
                if self._proc.poll() is not None:
                    break
                continue
            seen.append(line)
            match = DEVTOOLS_LINE.search(line)
            if match:
                _drain(self._proc.stderr)  # so chromium never blocks on a full pipe
                return int(match.group(2))
        raise CdpError("chromium did not open its DevTools endpoint:\n" + "".join(seen[-20:]))

    def __exit__(self, *exc: object) -> None:
        try:
            self._stack.close()  # the websocket
        except Exception:  # noqa: BLE001, S110 - closing a socket whose browser is gone
            pass
        if self._proc is not None:
            pgid = self._proc.pid  # start_new_session: chromium leads its own group (renderer, zygote, ...)
            try:
                os.killpg(pgid, signal.SIGTERM)
                self._proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=10)
        shutil.rmtree(self._profile, ignore_errors=True)

    # ------------------------------------------------------------------------------------------------ protocol

    def send(self, method: str, **params: Any) -> dict:
        """Send one command and return its result (events received meanwhile are looked at, then dropped)."""
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            message = json.loads(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.1)))
            if message.get("id") == message_id:
                if "error" in message:
                    raise CdpError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._note_event(message)
        raise CdpError(f"{method}: no answer within {self.timeout_s} s")

    def _note_event(self, message: dict) -> None:
        if message.get("method") == "Runtime.exceptionThrown":
            details = message["params"]["exceptionDetails"]
            self.console_errors.append(details.get("exception", {}).get("description") or details.get("text", ""))

    def open(self, url: str) -> None:
        result = self.send("Page.navigate", url=url)
        if result.get("errorText"):
            raise CdpError(f"{url}: {result['errorText']}")

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-serialisable values)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise CdpError(f"{expression!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float | None = None, what: str = "") -> Any:
        """Evaluate ``expression`` until it is truthy; return its value, or fail naming what was awaited and the
        page's visible text."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        value = None
        while time.monotonic() < deadline:
            try:
                value = self.evaluate(expression)
            except CdpError:  # the page is navigating: its context is gone for a moment
                value = None
            if value:
                return value
            time.sleep(0.25)
        text = self.evaluate("document.body ? document.body.innerText.slice(0, 3000) : ''")
        raise CdpError(f"timed out waiting for {what or expression!r}; the page shows:\n{text}")

    def text(self) -> str:
        return self.evaluate("document.body.innerText") or ""


def _drain(stream) -> None:
    """Read a pipe to its end in a daemon thread."""
    import threading

    threading.Thread(target=stream.read, daemon=True).start()


def cdp_available() -> bool:
    try:
        import websockets.sync.client  # noqa: F401
    except ImportError:
        return False
    return chromium_executable() is not None

