"""How the bridge makes Pepper talk: over libqi (NAOqi services) or through naoqi_driver's /speech.

`LibqiSpeech` connects a qi.Session to the robot (`tcp://ip:9559`, or `tcps://ip:9503` with a
user and password on NAOqi 2.9), then says each utterance with ALAnimatedSpeech (the gesture
mapped to a Pepper animation path and embedded as `^start(..) text ^wait(..)`), or with
ALTextToSpeech while ALAnimationPlayer runs the animation. A failed call marks the connection
lost and raises RobotUnavailable; the bridge reconnects and says the utterance again.

A robot that restarts accepts connections before NAOqi has registered its services (they come
up over seconds), so `connect` waits, bounded, until every service it uses is registered.

`NaoqiDriverSpeech` publishes the plain text for naoqi_driver2, which calls ALTextToSpeech.say.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path
from typing import Any

from uservlm_ros.core.backoff import Backoff
from uservlm_ros.core.errors import ConfigError, UservlmError
from uservlm_ros.core.gestures import annotate
from uservlm_ros.core.parameters import renamed_settings, setting

EARLY = "early"  # the first sentence, published before the answer is complete
REST = "rest"  # the final answer minus the early sentence already spoken
FULL = "full"  # the whole final answer


class RobotUnavailable(UservlmError):
    """The robot cannot be reached (yet); the utterance was not (completely) said."""


@dataclass(frozen=True)
class Utterance:
    request_id: str
    text: str
    gesture: str = ""
    part: str = FULL


@dataclass(frozen=True)
class RobotAddress:
    ip: str
    port: int = 9559
    tls: bool = False
    user: str = ""
    password: str = field(default="", repr=False)  # never printed or logged

    @property
    def url(self) -> str:
        return f"{'tcps' if self.tls else 'tcp'}://{self.ip}:{self.port}"


@dataclass(frozen=True)
class Connection:
    """One connection to Pepper; `connection_options` names its settings under a prefix (and
    puts it for {prefix} in their descriptions)."""

    ip: str = setting("127.0.0.1")
    """Pepper's address; 127.0.0.1 when run on the robot"""
    port: int = setting(9559, min=1, max=65535)
    """NAOqi port: 9559 (plain), 9503 (TLS on NAOqi 2.9)"""
    tls: bool = setting(False)
    """Connect with tcps:// (NAOqi 2.9; use port 9503 and {prefix}.user)"""
    user: str = setting("")
    """NAOqi 2.9 user name (e.g. nao); empty = no authentication"""
    password_env: str = setting("PEPPER_PASSWORD")
    """Environment variable holding the robot password (never a parameter, never logged)"""
    password_file: str = setting("")
    """File whose first line is the robot password; takes precedence over {prefix}.password_env"""
    connect_timeout_s: float = setting(5.0, min=0.1, max=60.0)
    """Give up one connection attempt after, s"""
    reconnect_min_s: float = setting(0.25, min=0.05, max=60.0)
    """First wait before reconnecting, s; doubles per failure up to {prefix}.reconnect_max_s"""
    reconnect_max_s: float = setting(1.0, min=0.1, max=600.0)
    """Longest wait between reconnections, s: bounds how long after the robot is back the node
    notices (a refused connection costs nothing, so retry often)"""


def connection_options(prefix: str) -> type:
    """A dataclass of the settings of one connection to Pepper (`Connection`), named
    `<prefix>.ip`, `<prefix>.port`, ...; its `address` reads the password. The options of a
    backend that talks to the robot subclass it."""
    return make_dataclass(
        f"{prefix.title()}Connection",
        renamed_settings(Connection, prefix),
        frozen=True,
        namespace={
            "address": property(_address),
            "__post_init__": lambda o: reconnect_backoff(
                prefix, o.reconnect_min_s, o.reconnect_max_s
            ),
        },
    )


def reconnect_backoff(prefix: str, min_s: float, max_s: float) -> Backoff:
    """The reconnect waits of `<prefix>.reconnect_min_s` .. `<prefix>.reconnect_max_s`;
    ConfigError naming the two parameters when they are the wrong way round."""
    if min_s > max_s:
        raise ConfigError(
            f"{prefix}.reconnect_min_s ({min_s:g} s) must not exceed "
            f"{prefix}.reconnect_max_s ({max_s:g} s)"
        )
    return Backoff(min_s, max_s)


def _address(options: Any) -> RobotAddress:
    """Where to connect, with the password read from its file or environment variable."""
    o = options
    return RobotAddress(o.ip, o.port, o.tls, o.user, read_password(o.password_env, o.password_file))


def read_password(env_var: str, file: str) -> str:
    """The robot password from a file (first line) or an environment variable; "" if neither."""
    if file:
        try:
            return Path(file).read_text().splitlines()[0].strip()
        except (OSError, IndexError) as error:
            raise ConfigError(f"cannot read the robot password file {file!r}: {error}") from error
    return os.environ.get(env_var, "") if env_var else ""


class _Authenticator:
    """libqi's client authenticator protocol (NAOqi 2.9 over TLS)."""

    def __init__(self, user: str, password: str) -> None:
        self._data = {"user": user, "token": password}

    def initialAuthData(self) -> dict[str, str]:
        return dict(self._data)


class _AuthenticatorFactory:
    def __init__(self, user: str, password: str) -> None:
        self._user, self._password = user, password

    def newAuthenticator(self) -> _Authenticator:
        return _Authenticator(self._user, self._password)


def open_session(address: RobotAddress, timeout_s: float) -> Any:
    """A qi session connected to Pepper (logging in on NAOqi 2.9 when a user is set);
    RobotUnavailable when it cannot be reached within `timeout_s`."""
    import qi

    session = qi.Session()
    if address.user:
        session.setClientAuthenticatorFactory(_AuthenticatorFactory(address.user, address.password))
    future = session.connect(address.url, _async=True)
    future.wait(int(timeout_s * 1000))
    if not future.isFinished() or future.hasError():
        reason = future.error() if future.isFinished() else "timed out"
        with contextlib.suppress(RuntimeError):
            session.close()
        raise RobotUnavailable(f"cannot reach Pepper at {address.url}: {reason}")
    return session


class LibqiSpeech:
    """Speech and gestures through NAOqi services; see the module docstring."""

    name = "libqi"

    def __init__(
        self,
        address: RobotAddress,
        animations: Mapping[str, str],
        animated: bool = True,
        language: str = "",
        wake_up: bool = True,
        connect_timeout_s: float = 5.0,
        services_timeout_s: float = 20.0,
        log: Callable[[str], None] = print,
    ) -> None:
        self.address = address
        self.animations = dict(animations)
        self.animated = animated
        self.language = language
        self.wake_up = wake_up
        self.connect_timeout_s = connect_timeout_s
        self.services_timeout_s = services_timeout_s
        self._log = log
        self._session: Any = None
        self._services: dict[str, Any] = {}
        self.description = address.url + (f" as {address.user}" if address.user else "")

    @property
    def connected(self) -> bool:
        return self._session is not None and self._session.isConnected()

    def connect(self) -> None:
        self.close()
        session = open_session(self.address, self.connect_timeout_s)
        try:
            self._wait_for_services(session, self.needed_services)
            wanted = (
                ["ALAnimatedSpeech"] if self.animated else ["ALTextToSpeech", "ALAnimationPlayer"]
            )
            self._services = {name: session.service(name) for name in wanted}
            if self.language:
                session.service("ALTextToSpeech").setLanguage(self.language)
            if self.wake_up:
                session.service("ALMotion").wakeUp()
        except (RuntimeError, RobotUnavailable) as error:
            with contextlib.suppress(RuntimeError):
                session.close()
            if isinstance(error, RobotUnavailable):
                raise
            raise RobotUnavailable(f"Pepper at {self.address.url}: {error}") from error
        self._session = session
        self._log(f"connected to Pepper at {self.address.url}")

    @property
    def needed_services(self) -> list[str]:
        """The NAOqi services `connect` and `speak` call."""
        names = ["ALAnimatedSpeech"] if self.animated else ["ALTextToSpeech", "ALAnimationPlayer"]
        if self.language and "ALTextToSpeech" not in names:
            names.append("ALTextToSpeech")
        if self.wake_up:
            names.append("ALMotion")
        return names

    def _wait_for_services(self, session: Any, names: list[str]) -> None:
        """Returns once every service is registered; RobotUnavailable after services_timeout_s
        or when the robot goes away meanwhile."""
        deadline = time.monotonic() + self.services_timeout_s
        for index, name in enumerate(names):
            future = session.waitForService(name, _async=True)
            while not future.isFinished():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not session.isConnected():
                    with contextlib.suppress(RuntimeError):
                        future.cancel()
                    why = (
                        f"not registered after {self.services_timeout_s:g} s"
                        if remaining <= 0
                        else "the robot went away while waiting for them"
                    )
                    raise RobotUnavailable(
                        f"Pepper at {self.address.url} is up but {', '.join(names[index:])}: {why}"
                    )
                future.wait(int(min(remaining, 0.1) * 1000))  # short slices: notice a loss
            if future.hasError():
                raise RobotUnavailable(
                    f"Pepper at {self.address.url}: waiting for {name}: {future.error()}"
                )

    def speak(self, utterance: Utterance) -> None:
        if not self.connected:
            raise RobotUnavailable(f"not connected to Pepper at {self.address.url}")
        animation = self.animations.get(utterance.gesture, "")
        try:
            if self.animated:
                self._services["ALAnimatedSpeech"].say(annotate(utterance.text, animation))
            else:
                if animation:
                    self._services["ALAnimationPlayer"].run(animation, _async=True)
                self._services["ALTextToSpeech"].say(annotate(utterance.text, ""))
        except RuntimeError as error:
            self.close()
            raise RobotUnavailable(f"lost Pepper at {self.address.url}: {error}") from error

    def close(self) -> None:
        if self._session is not None:
            with contextlib.suppress(RuntimeError):  # already gone
                self._session.close()
        self._session, self._services = None, {}


class NaoqiDriverSpeech:
    """Hands the text to naoqi_driver2 on its /speech topic (it calls ALTextToSpeech.say)."""

    name = "naoqi_driver"
    description = "the text on /speech"

    def __init__(self, publish_text: Callable[[str], None]) -> None:
        self._publish_text = publish_text

    @property
    def connected(self) -> bool:
        return True

    def connect(self) -> None:
        """Nothing to connect: the driver subscribes to /speech."""

    def speak(self, utterance: Utterance) -> None:
        self._publish_text(annotate(utterance.text, ""))

    def close(self) -> None:
        """Nothing to close."""
