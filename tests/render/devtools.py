"""Headless Chromium driven by the DevTools protocol over a pipe (`--remote-debugging-pipe`: commands
in on descriptor 3, answers out on 4, each a JSON message ended by a NUL): no port, no websocket, no
package beyond the standard library. For the tests that click through a page."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

KEYS = {"ArrowRight": 39, "ArrowLeft": 37}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page is not opened in a browser")
    return found


def _onto_3_and_4(read: int, write: int) -> None:
    """In the child: the pipe's ends as descriptors 3 and 4 (through copies above 10, so neither
    overwrites the other on the way)."""
    high_read, high_write = fcntl.fcntl(read, fcntl.F_DUPFD, 10), fcntl.fcntl(write, fcntl.F_DUPFD, 10)
    os.dup2(high_read, 3)
    os.dup2(high_write, 4)


class Browser:
    """One headless Chromium with one page; `close()` ends it."""

    def __init__(self, profile: Path, width: int = 1200, height: int = 900, timeout: float = 60.0):
        to_child, self._write = os.pipe()
        self._read, from_child = os.pipe()
        os.set_inheritable(to_child, True)
        os.set_inheritable(from_child, True)
        self.timeout = timeout
        self.messages: list = []  # console messages, exceptions and the browser's log entries seen
        self._buffer = b""
        self._next = 0
        args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                "--no-first-run", "--no-default-browser-check"]
        # the pipe's ends go to descriptors 3 and 4 of the child, where Chromium looks for them
        self._process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, pass_fds=(3, 4),
                                         preexec_fn=lambda: _onto_3_and_4(to_child, from_child))
        os.close(to_child)
        os.close(from_child)
        target = self._call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self._call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.send("Log.enable")  # the browser's own messages too (a resource that failed to load, a security error)
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)

    def _call(self, method: str, session: str | None = None, **params) -> dict:
        self._next += 1
        ident = self._next
        message = {"id": ident, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._event(reply)

    def _event(self, event: dict) -> None:
        method = event.get("method")
        if method == "Runtime.consoleAPICalled":
            self.messages.append(" ".join(str(a.get("value", a.get("description"))) for a in event["params"]["args"]))
        elif method == "Runtime.exceptionThrown":
            self.messages.append(json.dumps(event["params"]["exceptionDetails"]))
        elif method == "Log.entryAdded":
            self.messages.append(json.dumps(event["params"]["entry"]))

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError("Chromium closed the pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def send(self, method: str, **params) -> dict:
        return self._call(method, self._session, **params)

    def open(self, page: Path) -> None:
        """Navigate to the page and wait until it has loaded (its own document: not the one before it)."""
        url = page.as_uri()
        self.send("Page.navigate", url=url)
        deadline = time.monotonic() + self.timeout
        while self.evaluate(f"document.URL === {json.dumps(url)} && document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise TimeoutError("the page did not load")
            time.sleep(0.05)

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def key(self, name: str) -> None:
        """A real key press (down and up), as a person's."""
        for kind in ("rawKeyDown", "keyUp"):
            self.send("Input.dispatchKeyEvent", type=kind, key=name, code=name, windowsVirtualKeyCode=KEYS[name])

    def click(self, element_id: str) -> None:
        """A real mouse click in the middle of the element."""
        box = self.evaluate(f"(function(){{var r=document.getElementById({json.dumps(element_id)})"
                            ".getBoundingClientRect();return [r.x+r.width/2,r.y+r.height/2]})()")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> bytes:
        data = base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"])
        path.write_bytes(data)
        return data

    def close(self) -> None:
        try:
            self._call("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self._process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        os.close(self._write)
        os.close(self._read)
