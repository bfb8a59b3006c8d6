"""A face-identity backend run in a child process of its own.

dlib's Python binding holds the GIL for the whole embedding (~80-100 ms of a core). Run inside the
perception process, every other thread of it (the profiler, the executor, the composed camera
and face_crop nodes) waited for each embedding: camera -> profile p95 rose from 21 to 98 ms on
the demo graph (docs/benchmarks.md). In a child process the embedding runs beside them, on the
other core. The child is `python -m uservlm_ros.backends.identity_process`: it builds the backend
(face_identity.IDENTITY), says it is ready, then answers one crop at a time over its stdin/stdout
(length-prefixed pickles, local to the two processes). It ignores SIGINT (Ctrl-C reaches the
whole process group; the parent decides when it ends) and exits when its stdin closes, so it
never outlives the node, even one that was killed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
from typing import Any, BinaryIO

import numpy as np

from uservlm_ros.backends.face_identity import IDENTITY, IdentityOptions, check_crop
from uservlm_ros.core.errors import ConfigError, ModelLoadError, UservlmError

START_TIMEOUT_S = 60.0  # importing dlib and loading its two models: ~1-3 s on a robot's CPU
EMBED_TIMEOUT_S = 10.0  # one embedding takes ~0.1 s; 100x that means the child is stuck
_HEADER = struct.Struct("<I")
_ERRORS = {"ConfigError": ConfigError, "ModelLoadError": ModelLoadError}


class IdentityProcess:
    """A FaceIdentity whose embeddings are computed in a child process (see the module doc).
    `embed` is called from one thread at a time (the node's identity worker)."""

    def __init__(self, name: str, options: IdentityOptions | None = None) -> None:
        self._argument = json.dumps([name, dataclasses.asdict(options or IdentityOptions())])
        self._lock = threading.Lock()
        self.restarts = 0
        self._start()

    def _start(self) -> None:
        self._child = subprocess.Popen(
            [sys.executable, "-m", __name__, self._argument],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        reply = self._receive(START_TIMEOUT_S, "start")
        if reply[0] != "ready":
            self.close()
            raise _ERRORS.get(reply[1], UservlmError)(reply[2])
        self.model_id, self.dim = reply[1], reply[2]

    def __repr__(self) -> str:
        return f"IdentityProcess(model_id={self.model_id!r}, pid={self._child.pid})"

    def embed(self, crop_rgb: np.ndarray) -> np.ndarray | None:
        check_crop(crop_rgb)  # a bad crop is the caller's error, raised here as in-process
        with self._lock:
            if self._child.poll() is not None:  # it died (killed, out of memory): a new one
                self.restarts += 1
                self._start()
            _send(self._child.stdin, np.ascontiguousarray(crop_rgb))
            reply = self._receive(EMBED_TIMEOUT_S, "an embedding")
        if reply[0] == "error":
            raise UservlmError(f"identity process: {reply[2]}")
        return reply[1]

    def close(self) -> None:
        """End the child (closing its stdin ends it; killed if it does not go in 2 s)."""
        with contextlib.suppress(OSError):
            self._child.stdin.close()
        try:
            self._child.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()

    def _receive(self, timeout_s: float, what: str) -> tuple:
        stdout = self._child.stdout
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        reply = _receive(stdout) if ready else None
        if reply is None:
            code = self._child.poll()
            self._child.kill()
            state = "exited" if code is not None else f"gave no answer in {timeout_s:g} s"
            raise UservlmError(f"the identity process {state} while waiting for {what}")
        return reply


def _send(stream: BinaryIO, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: BinaryIO) -> Any:
    """The next value, or None at the end of the stream."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _serve(argument: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Replies get a descriptor of their own; whatever a library prints goes to stderr.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    requests = sys.stdin.buffer
    name, options = json.loads(argument)
    try:
        identity = IDENTITY.create(name, IdentityOptions(**options))
    except UservlmError as error:
        _send(replies, ("error", type(error).__name__, str(error)))
        return 1
    _send(replies, ("ready", identity.model_id, identity.dim))
    while (crop := _receive(requests)) is not None:
        try:
            _send(replies, ("ok", identity.embed(crop)))
        except (ValueError, RuntimeError) as error:  # one bad crop: say so and go on
            _send(replies, ("error", type(error).__name__, str(error)))
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1]))
