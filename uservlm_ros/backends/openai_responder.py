"""The `openai` responder: answers from a shared inference server (vLLM, SGLang, TGI, llama.cpp,
Ollama) through its OpenAI-compatible chat-completions endpoint.

The robot computer keeps the graph; the model runs on the server, one for a fleet. Each question
is one streaming request (SSE): the image goes as an image content part (a JPEG data URL), the
text part is the project prompt's question (with the profile in profile_prompt mode), tokens come
back into the same `on_token` callback as the local backends, and a cancelled goal closes the
connection, which makes the server abort the request. A User-VLM checkpoint needs the chat
template models/uservlm_chat_template.jinja (vLLM `--chat-template`) so that the server builds
the exact project prompt; LoRA adapters are the server's `--lora-modules` names.

Every request opens its own connection: a server that was down or restarted is used again as
soon as it answers, without restarting the node. Failures raise UservlmError with one line that
names the server and the reason (or, with `fallback`, are answered by the labelled templates).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from uservlm_ros.backends.fallback_responder import FallbackOptions
from uservlm_ros.backends.vlm import (
    BASE_ADAPTER,
    GenerationRequest,
    GenerationResult,
    StopCheck,
    TokenCallback,
    check_with_adapters,
    strings_check,
)
from uservlm_ros.core.errors import ConfigError, ModelLoadError, UservlmError
from uservlm_ros.core.parameters import setting
from uservlm_ros.core.prompt import TEMPLATE

_STOP_POLL_S = 0.05  # how often a waiting request looks at should_stop (cancel latency)
_FINISH = {"stop": "eos", "length": "length"}  # OpenAI finish_reason -> GenerationResult's
_QUESTION_START, _QUESTION_END = TEMPLATE.split("{question}")


def parse_server_adapters(entries: list[str]) -> dict[str, str]:
    """`["instruct", "dpo=user-vlm-dpo"]` -> {adapter: served name}; raises ConfigError.

    A plain NAME is served under the same name (vLLM `--lora-modules NAME=PATH`)."""
    adapters: dict[str, str] = {}
    for entry in entries:
        name, _, served = (part.strip() for part in entry.partition("="))
        served = served or name
        if not name or name == BASE_ADAPTER or name in adapters:
            raise ConfigError(
                f"server adapter {entry!r}: expected NAME or NAME=SERVED_NAME, each name once "
                f"and not {BASE_ADAPTER!r}"
            )
        adapters[name] = served
    return adapters


@dataclass(frozen=True, kw_only=True)  # by keyword: positionally, word_delay_s (base) is first
class ServerOptions(FallbackOptions):
    """Where and how to reach the server: the `server.*` parameters."""

    url: str = setting("http://localhost:8000/v1", name="server.url")
    """openai backend: the server's OpenAI-compatible API base (vLLM: http://HOST:8000/v1);
    https:// for TLS terminated by the server or a proxy"""
    model: str = setting("", name="server.model")
    """openai backend: the served model's name (vLLM --served-model-name, else its --model)"""
    # NAME or NAME=SERVED_NAME entries as the parameter gives them, or {adapter: served name} in
    # code; kept as a dict.
    adapters: Mapping[str, str] = setting(
        [], name="server.adapters", check=strings_check(parse_server_adapters)
    )
    """openai backend: adapters a goal may name, each NAME (served under that name: vLLM
    --lora-modules NAME=FOLDER) or NAME=SERVED_NAME; `base` = server.model"""
    api_key_file: str = setting("", name="server.api_key_file")
    """openai backend: a file holding the server's API key (sent as a bearer token, never
    logged); empty = no key"""
    connect_timeout_s: float = setting(5.0, name="server.connect_timeout_s", min=0.1, max=300.0)
    """openai backend: longest wait for a connection to the server, seconds"""
    token_timeout_s: float = setting(30.0, name="server.token_timeout_s", min=0.1, max=600.0)
    """openai backend: longest wait for the next streamed token (the first one included),
    seconds; longer means the question ends with an error (server slow or overloaded)"""
    fallback: bool = setting(False, name="server.fallback")
    """openai backend: when the server fails before the first token (down, overloaded, refused),
    answer with the fallback templates (responder=fallback-template, logged) instead of an
    error Response"""
    jpeg_quality: int = 90  # the image part's JPEG quality

    def __post_init__(self) -> None:
        check_with_adapters(self, parse_server_adapters)


def question_text(prompt: str) -> str:
    """The text of the user's turn in a core/prompt.build_prompt prompt (the profile included
    in profile_prompt mode); the server's chat template adds the turn markers again."""
    if prompt.startswith(_QUESTION_START) and prompt.endswith(_QUESTION_END):
        return prompt[len(_QUESTION_START) : -len(_QUESTION_END)]
    return prompt


def describe_http_error(status: int, body: str) -> str:
    """One line for an HTTP error from the server: what happened and what to check."""
    try:
        detail = json.loads(body)
        detail = detail.get("error", detail) if isinstance(detail, dict) else detail
        detail = detail.get("message", detail) if isinstance(detail, dict) else detail
    except ValueError:
        detail = body
    detail = " ".join(str(detail).split())[:200]
    reason = {
        401: "the API key was refused (check server.api_key_file)",
        403: "the API key was refused (check server.api_key_file)",
        404: "no such model or endpoint (check server.model, server.adapters and server.url)",
        429: "the server is overloaded (too many requests)",
        503: "the server is overloaded or starting",
    }.get(status, "the request failed")
    return f"HTTP {status}: {reason}" + (f": {detail}" if detail else "")


class OpenAIResponder:
    """A VlmBackend whose model runs on an OpenAI-compatible server; see the module docstring."""

    def __init__(
        self,
        server: ServerOptions,
        log: Callable[[str], None] = print,
        warn: Callable[[str], None] | None = None,
        fallback: Any = None,  # a VlmBackend answering when the server fails (server.fallback)
    ) -> None:
        if not server.model:
            raise ConfigError("server.model is empty: set it to the model name the server serves")
        if not is_printable_name(server.model):
            raise ConfigError(f"server.model {server.model!r} has characters no model name has")
        if not server.url.startswith(("http://", "https://")):
            raise ConfigError(f"server.url {server.url!r} must start with http:// or https://")
        self.server = server
        self._log = log
        self._warn = warn or log
        self._fallback = fallback
        self._url = server.url.rstrip("/")
        self._headers = _auth_headers(server.api_key_file)

    @property
    def adapters(self) -> tuple[str, ...]:
        return (BASE_ADAPTER, *self.server.adapters)

    def responder_id(self, adapter: str = "") -> str:
        return f"openai:{self.server.model}@{adapter or BASE_ADAPTER}"

    def load(self) -> None:
        """Ask the server what it serves. A server that cannot be reached is not an error here
        (it may start after the robot); one that answers without our model, or refuses the
        key, is."""
        try:
            self.check_server()
        except ModelLoadError:
            raise
        except UservlmError as error:
            self._warn(f"{error}; questions get an error until it answers")

    def check_server(self) -> None:
        """UservlmError when the server cannot be reached; ModelLoadError when it refuses the
        key or does not serve server.model and every server.adapters name."""
        served = self.served_models()
        wanted = [self.server.model, *self.server.adapters.values()]
        missing = [name for name in wanted if name not in served]
        if missing:
            raise ModelLoadError(
                f"server {self._url} does not serve {', '.join(missing)} (it serves: "
                f"{', '.join(served) or 'nothing'}); check server.model and server.adapters"
            )
        self._log(f"server {self._url} serves {', '.join(wanted)}")

    def warm_up(self) -> None:
        """A one-token request: the server's first request compiles and allocates."""
        try:
            hello = TEMPLATE.format(question="Hello")
            self.generate(GenerationRequest(np.zeros((64, 64, 3), np.uint8), hello, 1))
        except UservlmError as error:
            self._warn(f"warm-up skipped: {error}")

    def generate(self, request: GenerationRequest) -> GenerationResult:
        adapter = request.adapter or BASE_ADAPTER
        if adapter not in self.adapters:
            raise UservlmError(f"unknown adapter {adapter!r}; served: {', '.join(self.adapters)}")
        if request.image is None:
            raise UservlmError("the served VLM needs a camera image")
        started = time.perf_counter()
        body = self._request_body(request.image, request.prompt, request.max_new_tokens, adapter)
        timings = {"preprocess": (time.perf_counter() - started) * 1e3}
        streamed = [0]  # tokens already passed on: the fallback may not take over after one

        def counting(text: str, tokens: int) -> None:
            streamed[0] = tokens
            if request.on_token is not None:
                request.on_token(text, tokens)

        should_stop = request.should_stop or (lambda: False)
        try:
            return asyncio.run(self._complete(body, adapter, counting, should_stop, timings))
        except UservlmError as error:
            if self._fallback is None or streamed[0]:
                raise
            self._warn(f"{error}; answered with the fallback templates")
            return self._fallback.generate(replace(request, adapter=""))

    # ------------------------------------------------------------------ the request

    def _request_body(
        self, image: np.ndarray, prompt: str, max_new_tokens: int, adapter: str
    ) -> dict[str, Any]:
        ok, jpeg = cv2.imencode(
            ".jpg",
            cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, self.server.jpeg_quality],
        )
        if not ok:
            raise UservlmError("cannot encode the camera image as JPEG")
        data_url = "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode("ascii")
        model = self.server.model if adapter == BASE_ADAPTER else self.server.adapters[adapter]
        return {
            "model": model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": question_text(prompt)},
                    ],
                }
            ],
            "max_tokens": max_new_tokens,
            "temperature": 0.0,  # greedy, as the local backends
            "stream": True,
            "stream_options": {"include_usage": True},
        }

    def _timeout(self) -> Any:
        import aiohttp

        return aiohttp.ClientTimeout(
            total=None,
            sock_connect=self.server.connect_timeout_s,
            sock_read=self.server.token_timeout_s,
        )

    def served_models(self, base_only: bool = False) -> list[str]:
        """The names of the models the server serves (its /models), with `base_only` without
        the adapters (vLLM lists each LoRA module with its base model as `parent`);
        UservlmError when it cannot be reached, ModelLoadError when it refuses the key."""
        entries = asyncio.run(self._served_models())
        return [entry["id"] for entry in entries if not (base_only and entry.get("parent"))]

    async def _served_models(self) -> list[dict[str, Any]]:
        """The entries of the server's /models answer, each with a model name usable in a
        request and in one line of text (an OpenAI-compatible list: {"data": [{"id": ...}]})."""
        import aiohttp

        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout(), headers=self._headers) as session,
                session.get(f"{self._url}/models") as response,
            ):
                text = await response.text()
                if response.status != 200:
                    refused = response.status in (401, 403)  # the key: configure must fail
                    error_type = ModelLoadError if refused else UservlmError
                    raise error_type(describe_http_error(response.status, text))
                entries = json.loads(text).get("data")
                if not isinstance(entries, list) or not all(map(_is_model_entry, entries)):
                    raise UservlmError(
                        "its /models answer is not an OpenAI-compatible model list (a `data` "
                        "list of entries with a printable `id`)"
                    )
                return entries
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as error:
            reason = _network_reason(error, self.server)
            raise UservlmError(f"server {self._url}: {reason}") from None
        except UservlmError as error:  # the same kind, naming the server
            raise type(error)(f"server {self._url}: {error}") from None

    async def _complete(
        self,
        body: dict[str, Any],
        adapter: str,
        on_token: TokenCallback,
        should_stop: StopCheck,
        timings: dict[str, float],
    ) -> GenerationResult:
        """Run the request as a task and cancel it (closing the connection) on should_stop."""
        stream = _Stream(on_token)
        task = asyncio.ensure_future(self._post(body, stream, timings))
        while not task.done():
            await asyncio.wait({task}, timeout=_STOP_POLL_S)
            if not task.done() and should_stop():
                task.cancel()
                stream.finish_reason = "cancelled"
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # closing the connection: the server aborts the request
                break
        if stream.finish_reason != "cancelled":
            task.result()  # raises what the request raised
        elif stream.first_token_at is None:
            timings["first_token"] = (time.perf_counter() - stream.started) * 1e3
        if stream.first_token_at is not None:
            timings["decode"] = (time.perf_counter() - stream.first_token_at) * 1e3
        return GenerationResult(
            text=stream.text.strip(),
            responder=self.responder_id(adapter),
            prompt_tokens=stream.prompt_tokens,
            new_tokens=stream.new_tokens(),
            finish_reason=stream.finish_reason,
            timings_ms=timings,
        )

    async def _post(self, body: dict[str, Any], stream: _Stream, timings: dict[str, float]):
        import aiohttp

        where = f"server {self._url} ({body['model']})"
        stream.started = time.perf_counter()
        try:
            async with (
                aiohttp.ClientSession(timeout=self._timeout(), headers=self._headers) as session,
                session.post(f"{self._url}/chat/completions", json=body) as response,
            ):
                timings["connect"] = (time.perf_counter() - stream.started) * 1e3
                if response.status != 200:
                    raise UservlmError(describe_http_error(response.status, await response.text()))
                async for line in response.content:
                    if stream.feed(line):
                        break
                    if stream.first_token_at is not None and "first_token" not in timings:
                        timings["first_token"] = (stream.first_token_at - stream.started) * 1e3
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UservlmError(f"{where}: {_network_reason(error, self.server)}") from None
        except UservlmError as error:  # HTTP errors and errors inside the stream
            raise UservlmError(f"{where}: {error}") from None
        if stream.first_token_at is None:
            timings["first_token"] = (time.perf_counter() - stream.started) * 1e3


class _Stream:
    """The state of one SSE response: text so far, token counts, the finish reason."""

    def __init__(self, on_token: TokenCallback) -> None:
        self._on_token = on_token
        self.text = ""
        self.chunks = 0  # content deltas: one token each on vLLM
        self.completion_tokens: int | None = None  # the server's count (usage), when sent
        self.prompt_tokens = 0
        self.finish_reason = "eos"
        self.started = time.perf_counter()
        self.first_token_at: float | None = None

    def new_tokens(self) -> int:
        if self.finish_reason == "cancelled" or self.completion_tokens is None:
            return self.chunks
        return self.completion_tokens

    def feed(self, raw: bytes) -> bool:
        """One SSE line; True at the end of the stream."""
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            return False  # blank separators, comments, event names
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return True
        try:
            event = json.loads(data)
        except ValueError:
            raise UservlmError(f"the server sent a malformed event: {data[:80]!r}") from None
        if "error" in event:  # an error after the stream started (e.g. the engine died)
            error = event["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise UservlmError(f"the server failed mid-answer: {' '.join(str(message).split())}")
        if usage := event.get("usage"):
            self.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            self.completion_tokens = int(usage.get("completion_tokens") or 0)
        for choice in event.get("choices") or []:
            delta = (choice.get("delta") or {}).get("content") or ""
            if delta:
                if self.first_token_at is None:
                    self.first_token_at = time.perf_counter()
                self.text += delta
                self.chunks += 1
                self._on_token(self.text.strip(), self.chunks)
            if choice.get("finish_reason"):
                self.finish_reason = _FINISH.get(choice["finish_reason"], choice["finish_reason"])
        return False


def _auth_headers(key_file: str) -> dict[str, str]:
    """The bearer header for the key in key_file ({} without one); the key is never logged."""
    if not key_file:
        return {}
    try:
        key = Path(key_file).read_text(encoding="utf-8").strip()
    except OSError as error:
        reason = error.strerror or error
        raise ModelLoadError(f"server.api_key_file {key_file!r}: {reason}") from None
    except UnicodeDecodeError:
        raise ModelLoadError(f"server.api_key_file {key_file!r} is not UTF-8 text") from None
    if not key:
        raise ModelLoadError(f"server.api_key_file {key_file!r} is empty")
    return {"Authorization": f"Bearer {key}"}


def _is_model_entry(entry: Any) -> bool:
    name = entry.get("id") if isinstance(entry, dict) else None
    return isinstance(name, str) and name.strip() != "" and is_printable_name(name)


def is_printable_name(name: str) -> bool:
    """A model name that prints as one plain line: no control characters, no line breaks, no
    invisible direction overrides (which would garble a log line or the demo's report)."""
    return name.isprintable() and not any(unicodedata.category(c) == "Cf" for c in name)


def _network_reason(error: BaseException, server: ServerOptions) -> str:
    """One line for a connection-level failure (never the request, which may hold the key)."""
    import aiohttp

    if isinstance(error, aiohttp.ServerTimeoutError | TimeoutError):
        return (
            f"no answer within server.token_timeout_s={server.token_timeout_s:g} s "
            f"(or server.connect_timeout_s={server.connect_timeout_s:g} s): the server is slow "
            "or overloaded"
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return f"cannot connect ({error.os_error.strerror or error.os_error}): is the server up?"
    if isinstance(error, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "the server closed the connection mid-answer"
    if isinstance(error, aiohttp.InvalidURL):
        return f"invalid URL (server.url {server.url!r})"
    if isinstance(error, aiohttp.ClientResponseError) and error.status == 400:
        return f"not an HTTP server ({error.message})"
    return " ".join(f"{type(error).__name__}: {error}".split())
