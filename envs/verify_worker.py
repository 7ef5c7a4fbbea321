"""math-verify in a child process, for callers that are not on the main thread.

math-verify bounds its sympy work with SIGALRM, which Python allows only in the main
thread. Environment servers usually score from worker threads (Ray actors, executors),
where math-verify would have to run without any timeout, and a model answer such as
`9^{9^{9^{9}}}` then keeps sympy busy forever. A thread cannot be killed, a process can:
this module keeps one long-lived child process that runs math-verify, waits for each
answer with a hard deadline, and kills and later restarts the child when it overruns.

The child is started with `python -c` (no package import, so starting it does not pull
in Ray or the rest of rayeval) and exits on its own when its stdin closes.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time

logger = logging.getLogger(__name__)

# Seconds the child may take to import math-verify (sympy) before it is given up on.
STARTUP_TIMEOUT: float = 60.0

_WORKER_SOURCE: str = r'''
import json, logging, sys
logging.disable(logging.CRITICAL)
from math_verify import parse, verify
from math_verify.errors import TimeoutException
out = sys.stdout
out.write("ready\n"); out.flush()
for line in sys.stdin:
    ok = False
    try:
        req = json.loads(line)
        t = req["t"]
        g = parse("$" + req["g"] + "$", parsing_timeout=t)
        p = parse("\\boxed{" + req["p"] + "}", parsing_timeout=t)
        ok = bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=t))
    except (Exception, TimeoutException):
        ok = False
    out.write("1\n" if ok else "0\n"); out.flush()
'''


class VerifyWorker:
    """One child process running math-verify; calls are serialised by a lock."""

    def __init__(self) -> None:
        self._lock: threading.Lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes] | None:
        proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        if self._read_line(proc, STARTUP_TIMEOUT) != b"ready":
            logger.warning("math-verify worker failed to start; non-numeric answers score 0")
            self._kill(proc)
            return None
        return proc

    @staticmethod
    def _read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes | None:
        """One line from the child, or None on deadline/EOF. Reads byte-wise via select
        so the deadline holds even when the child writes nothing."""
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 64)
            if not chunk:
                return None
            buf.extend(chunk)
            if b"\n" in buf:
                return bytes(buf.split(b"\n", 1)[0])

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:  # pragma: no cover - best effort
            pass

    def equal(self, prediction: str, gold: str, timeout: float) -> bool:
        """math-verify's verdict, or False if the child errs or exceeds `timeout` seconds."""
        request = json.dumps({"p": prediction, "g": gold, "t": max(1, int(timeout))}) + "\n"
        with self._lock:
            if self._proc is None or self._proc.poll() is not None:
                self._proc = self._start()
                if self._proc is None:
                    return False
            proc = self._proc
            assert proc.stdin is not None
            try:
                proc.stdin.write(request.encode("utf-8", "replace"))
                proc.stdin.flush()
            except OSError:
                self._kill(proc)
                self._proc = None
                return False
            # The child applies `timeout` to each of its three steps; allow for all three.
            line = self._read_line(proc, 3 * timeout + 1.0)
            if line is None:
                logger.warning("math-verify exceeded %.1fs on %.80r; scoring 0", timeout, prediction)
                self._kill(proc)
                self._proc = None
                return False
            return line == b"1"

    def close(self) -> None:
        """Stop the child (it would also exit on its own once our end of stdin closes)."""
        with self._lock:
            if self._proc is not None:
                self._kill(self._proc)
                self._proc = None


_WORKER: VerifyWorker | None = None
_WORKER_LOCK: threading.Lock = threading.Lock()


def shared_worker() -> VerifyWorker:
    """The process-wide worker, created on first use and stopped at interpreter exit."""
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = VerifyWorker()
            atexit.register(_WORKER.close)
        return _WORKER
