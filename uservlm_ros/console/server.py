"""The console's web server (aiohttp, in a thread of its own): the page, its WebSocket, controls.

    GET  /              the page (static/index.html); `/?token=T` sets the token cookie
    GET  /static/...    its script and style sheet
    GET  /ws            WebSocket: JSON text messages with the sections that changed
                        ({"time": ..., "people": [...], "conversation": [...], ...}), and the
                        camera as binary messages (one JPEG each, only the newest frame)
    GET  /api/state     every section as one JSON object (scripts, tests)
    POST /api/ask       {"question": "...", "track_id": 0} or {..., "person_id": "kqzxt"}
                        -> {"request_id": "..."}
    POST /api/privacy   {"attribute": "gender", "enabled": false} -> {"ok": true} or {"error"}
    POST /api/forget    {"person_id": "kqzxt"} -> {"forgotten": 1, "message": "..."} or {"error"}
    POST /api/forget_everyone  {} -> the same, for every person the profiler knows

The rules of who may connect are in security.py. Nothing is written to disk: frames live in
memory until they are sent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aiohttp import WSMsgType, web

from uservlm_ros.console import security
from uservlm_ros.console.state import SECTIONS, ConsoleState
from uservlm_ros.core import labels
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.presence import valid_person_id

STATIC = Path(__file__).resolve().parent / "static"
MAX_CLIENTS = 8  # pages connected at once; more are refused so the console stays cheap
MAX_QUESTION_CHARS = 2000  # the responder has its own, usually lower, limit
MAX_TRACK_ID = 2**32 - 1  # Respond.Goal.track_id is a uint32
PRIVACY_TIMEOUT_S = 5.0
FORGET_TIMEOUT_S = 5.0
HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",  # the token may be in the address bar once
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; "
        "frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True)
class Forgotten:
    """The profiler's answer to a forget request (ForgetPersons' response)."""

    success: bool  # false: the profiler knows nobody by that id
    forgotten: int  # persons erased
    message: str


class Actions(Protocol):
    """What the page can make the robot do (the console node implements it over ROS)."""

    def ask(self, question: str, track_id: int, person_id: str) -> str:
        """Send the question (for a track, a person, or neither: the addressee); return its
        request id; raise UservlmError when it cannot go."""

    def set_privacy(self, attribute: str, enabled: bool) -> concurrent.futures.Future[str]:
        """Set the profiler's enable.<attribute>; the future gives "" or why it was refused."""

    def forget(self, person_id: str) -> concurrent.futures.Future[Forgotten]:
        """Make the profiler forget a person ("" = everyone); the future gives its answer. Raise
        UservlmError when the profiler cannot be asked."""


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending: dict[str, Any] = field(default_factory=dict)
    frame: bytes | None = None


def url_host(host: str) -> str:
    """The host part of a URL for a bind address; the unspecified address -> 127.0.0.1."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "[::1]"
    return f"[{host}]" if address.version == 6 else host


class ConsoleServer:
    def __init__(
        self,
        state: ConsoleState,
        actions: Actions,
        *,
        host: str = "127.0.0.1",
        port: int = 8088,
        token: str | None = None,
        push_hz: float = 10.0,
        on_clients: Callable[[int], None] | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        if security.token_required(host) and not token:
            raise UservlmError(f"binding {host} (not loopback) needs a token")
        self.state = state
        self.actions = actions
        self.host, self.port, self.token = host, port, token
        self.push_interval = 1.0 / push_hz
        self.on_clients = on_clients or (lambda count: None)
        self.log = log
        self.frames_sent = 0
        self._clients: set[_Client] = set()
        self._versions: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    # -- life cycle (called from any thread)

    def start(self) -> None:
        """Listen; raises UservlmError (with the reason) when the address cannot be bound."""
        ready = threading.Event()
        failure: list[OSError] = []

        def serve() -> None:
            loop = self._loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(self._open())
            except OSError as error:
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=serve, name="console_http", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise UservlmError(
                f"the console cannot listen on {self.host}:{self.port}: "
                f"{failure[0].strerror or failure[0]}"
            )

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop already ended
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._thread = None

    @property
    def url(self) -> str:
        """The address to open on this machine (with the token where one is needed)."""
        base = f"http://{url_host(self.host)}:{self.port}/"
        return f"{base}?token={self.token}" if self.token else base

    @property
    def clients(self) -> int:
        return len(self._clients)

    def show_frame(self, jpeg: bytes) -> None:
        """Send this camera frame to every page (thread-safe; older unsent frames are dropped)."""
        if self._loop is not None and self._clients:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._set_frame, jpeg)

    # -- inside the event loop

    async def _open(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024)
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, follow_symlinks=False)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/api/state", self._api_state)
        app.router.add_post("/api/ask", self._api_ask)
        app.router.add_post("/api/privacy", self._api_privacy)
        app.router.add_post("/api/forget", self._api_forget)
        app.router.add_post("/api/forget_everyone", self._api_forget)
        app.on_response_prepare.append(self._add_headers)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            raise
        self.port = self._runner.addresses[0][1]  # the bound port, when 0 (any) was asked for
        self._connected = asyncio.Event()
        self._pusher = asyncio.get_running_loop().create_task(self._push())

    async def _close(self) -> None:
        self._pusher.cancel()
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"console stopping")
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _guard(self, request: web.Request, handler):
        if self.token is None:
            # The header itself: aiohttp's request.host falls back to this machine's name when
            # it is missing (an HTTP/1.0 request), which would pass for loopback.
            host = request.headers.get("Host")
            if not host:
                return _refuse(403, "a request without a Host header is not served")
            if not security.loopback_host_header(host):
                return _refuse(403, f"Host {_shown(host)} is not this machine")
        else:
            given = (
                request.query.get("token")
                or security.bearer(request.headers.get("Authorization"))
                or request.cookies.get(security.COOKIE)
            )
            if not security.token_matches(self.token, given):
                return _refuse(
                    401, "this console needs its token: open the address it printed at start"
                )
        if request.method != "GET" or request.path == "/ws":
            reason = security.cross_site(
                request.headers.get("Origin"), request.headers.get("Sec-Fetch-Site"), request.host
            )
            if reason:
                return _refuse(403, reason)
        if request.method == "POST" and request.content_type != "application/json":
            return _refuse(415, "controls take JSON (Content-Type: application/json)")
        if self.token is not None and "token" in request.query and request.path == "/":
            # once the token came in the address, the cookie carries it; drop it from the URL
            response = web.Response(status=303, headers={"Location": "/"})
            response.set_cookie(
                security.COOKIE, self.token, httponly=True, samesite="Strict", path="/"
            )
            return response
        return await handler(request)

    async def _add_headers(self, request: web.Request, response: web.StreamResponse) -> None:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _api_state(self, request: web.Request) -> web.Response:
        self.state.tick()
        return web.json_response({n: self.state.section(n) for n in SECTIONS})

    async def _api_ask(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        question = body.get("question", "")
        track_id = body.get("track_id", 0)
        person_id = body.get("person_id", "")
        if not isinstance(question, str):
            return _error(400, f"question must be text, got {_shown(question)}")
        question = question.strip()
        if not question:
            return _error(400, "type a question first")
        if len(question) > MAX_QUESTION_CHARS:
            return _error(400, f"the question is longer than {MAX_QUESTION_CHARS} characters")
        if not _utf8(question):
            return _error(400, "the question is not valid text (a lone UTF-16 surrogate)")
        if not _whole(track_id) or not 0 <= track_id <= MAX_TRACK_ID:
            return _error(
                400, f"track_id must be a whole number 0..{MAX_TRACK_ID}, got {_shown(track_id)}"
            )
        if not isinstance(person_id, str) or (person_id and not valid_person_id(person_id)):
            return _error(400, f"person_id must be a person id, got {_shown(person_id)}")
        if person_id and track_id:
            return _error(400, "give track_id or person_id, not both")
        try:
            request_id = self.actions.ask(question, track_id, person_id)
        except UservlmError as error:
            return _error(503, str(error))
        return web.json_response({"request_id": request_id})

    async def _api_privacy(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        attribute, enabled = body.get("attribute"), body.get("enabled")
        if not isinstance(attribute, str) or attribute not in labels.ATTRIBUTES:
            return _error(400, f"attribute must be one of {', '.join(labels.ATTRIBUTES)}")
        if not isinstance(enabled, bool):
            return _error(400, f"enabled must be true or false, got {_shown(enabled)}")
        future = self.actions.set_privacy(attribute, enabled)
        try:
            reason = await asyncio.wait_for(asyncio.wrap_future(future), PRIVACY_TIMEOUT_S)
        except TimeoutError:
            return _error(504, f"the profiler did not answer within {PRIVACY_TIMEOUT_S:g} s")
        if reason:
            return _error(409, reason)
        return web.json_response({"ok": True})

    async def _api_forget(self, request: web.Request) -> web.Response:
        body = await _json_object(request)
        if isinstance(body, web.Response):
            return body
        person_id = ""  # everyone: only through its own endpoint, never by a missing id
        if request.path == "/api/forget":
            person_id = body.get("person_id")
            if not isinstance(person_id, str) or not valid_person_id(person_id):
                return _error(400, f"person_id must be a person id, got {_shown(person_id)}")
        try:
            future = self.actions.forget(person_id)
            outcome = await asyncio.wait_for(asyncio.wrap_future(future), FORGET_TIMEOUT_S)
        except UservlmError as error:
            return _error(503, str(error))
        except TimeoutError:
            return _error(504, f"the profiler did not answer within {FORGET_TIMEOUT_S:g} s")
        if not outcome.success:
            return _error(404, outcome.message or f"the robot does not know {person_id}")
        return web.json_response({"forgotten": outcome.forgotten, "message": outcome.message})

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if len(self._clients) >= MAX_CLIENTS:
            return _refuse(503, f"already {MAX_CLIENTS} pages connected")
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096)
        await ws.prepare(request)
        self.state.tick()
        client = _Client(ws, pending={n: self.state.section(n) for n in SECTIONS})
        client.wake.set()
        self._clients.add(client)
        self._connected.set()
        self.on_clients(len(self._clients))
        sender = asyncio.get_running_loop().create_task(self._send(client))
        try:
            async for message in ws:  # the page sends nothing; this waits for the close
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self._clients.discard(client)
            if not self._clients:
                self._connected.clear()
            sender.cancel()
            self.on_clients(len(self._clients))
        return ws

    async def _send(self, client: _Client) -> None:
        try:
            while not client.ws.closed:
                await client.wake.wait()
                client.wake.clear()
                if client.pending:
                    sections, client.pending = client.pending, {}
                    await client.ws.send_str(json.dumps({"time": time.time(), **sections}))
                if client.frame is not None:
                    frame, client.frame = client.frame, None
                    await client.ws.send_bytes(frame)
                    self.frames_sent += 1
        except (ConnectionError, RuntimeError):
            pass  # the page went away; the receive loop cleans up

    def _set_frame(self, jpeg: bytes) -> None:
        for client in self._clients:
            client.frame = jpeg
            client.wake.set()

    async def _push(self) -> None:
        while True:
            await asyncio.sleep(self.push_interval)
            if not self._clients:
                await self._connected.wait()  # idle: no wake-ups while nobody watches
                continue
            self.state.tick()
            changed, self._versions = self.state.changes(self._versions)
            if changed:
                for client in self._clients:
                    client.pending.update(changed)
                    client.wake.set()


async def _json_object(request: web.Request) -> dict[str, Any] | web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not valid JSON")
    if not isinstance(body, dict):
        return _error(400, "expected a JSON object")
    return body


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _utf8(text: str) -> bool:
    """False for text that cannot be sent (a lone surrogate from a JSON \\ud800 escape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(value: Any, limit: int = 40) -> str:
    """A client's value in an error line, as JSON: short, one line, ASCII (never a surrogate
    that cannot be sent back)."""
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "an object"
    text = json.dumps(value)  # None -> null, inf (from 1e999999) -> Infinity
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"error": text}, status=status)


def _refuse(status: int, text: str) -> web.Response:
    return web.Response(status=status, text=f"uservlm console: {text}\n")
