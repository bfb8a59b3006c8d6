"""The profiler node's face identity: the embedding process and its worker, the forget service,
the opt-in persons database. The person logic itself is core/persons.py and
core/person_profiles.py; this is what ties it to a node (parameters, logs, diagnostics).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from uservlm.srv import ForgetPersons

from uservlm_ros.backends.face_identity import IDENTITY, MIN_CROP
from uservlm_ros.backends.identity_process import IdentityProcess
from uservlm_ros.core.errors import UservlmError
from uservlm_ros.core.parameters import Param, config_of, params_of
from uservlm_ros.core.person_profiles import PersonProfiles
from uservlm_ros.core.persons import (
    EmbeddingConfig,
    EmbeddingSchedule,
    Match,
    PersonRegistry,
    PersonsConfig,
)
from uservlm_ros.core.worker import SlotWorker
from uservlm_ros.ros import topics

PARAMS = [
    Param(
        "enable.identity",
        True,
        "Recognise a person who comes back from a face embedding (persons.*); false computes "
        "no embedding, and each new face track is an anonymous person",
        live=True,
    ),
    IDENTITY.choice_param("identity.backend", "dlib_resnet", "Face-embedding backend"),
    *IDENTITY.params(),
    *params_of(EmbeddingConfig, "identity"),
    *params_of(PersonsConfig, "persons"),
    Param(
        "persons.database",
        "",
        "Opt-in file that keeps known persons (their face embeddings: biometric data) across "
        'restarts, written with mode 0600 on deactivation and after a forget; "" = memory only',
    ),
]


class PersonIdentity:
    """Created with the node; `registry()` and `start()` when it configures, `close()` when it
    cleans up. `on_identified(track_id, match)` runs in the identity worker when a track's
    person changed (an anonymous person identified)."""

    def __init__(self, node, on_identified: Callable[[int, Match], None]) -> None:
        self._node = node
        self._on_identified = on_identified
        self.backend: IdentityProcess | None = None
        self.people: PersonProfiles | None = None
        # Embeddings (~0.1 s each) in a thread of their own, so profiles never wait for them.
        self.worker: SlotWorker[tuple[int, np.ndarray, float]] = SlotWorker(
            lambda item: self._identify(*item),
            "identity_worker",
            node.worker_error_logger(lambda item: f"the face of track {item[0]}"),
            latency_bound=False,  # ~0.1-0.4 s a face, and no profile waits for it
        )
        node.create_service(ForgetPersons, topics.FORGET_PERSONS, self._on_forget)

    @property
    def on(self) -> bool:
        return self.backend is not None and self._node.params["enable.identity"]

    def registry(self) -> PersonRegistry:
        """A registry of the node's persons.* settings, with the known persons of the opt-in
        database; raises UservlmError (naming the file) when the database cannot be read."""
        p = self._node.params
        registry = PersonRegistry(config_of(PersonsConfig, "persons", p))
        path = self._database()
        if path is not None:
            if path.exists():
                loaded = registry.load(path)
                self._log().info(f"{loaded} known persons read from persons.database")
            else:
                self._log().info("persons.database does not exist yet: starting empty")
        return registry

    def schedule(self) -> EmbeddingSchedule:
        return EmbeddingSchedule(self.embedding_config())

    def embedding_config(self) -> EmbeddingConfig:
        return config_of(EmbeddingConfig, "identity", self._node.params)

    def start(self, people: PersonProfiles) -> None:
        """The embedding backend in a process of its own (backends/identity_process.py: dlib
        holds the GIL), or none, said in one line: without it tracks act as persons."""
        self.people = people
        p = self._node.params
        try:
            name = p["identity.backend"]
            self.backend = IdentityProcess(name, IDENTITY.options(name, p))
        except UservlmError as error:
            self._log().warning(
                f"face identity off ({error}): every face track is an anonymous person"
            )
            return
        self._log().info(f"face identity {self.backend.model_id} loaded")

    def fit(self, crop: np.ndarray, quality_problem: str | None) -> bool:
        """Whether a crop may be embedded: square, large enough, through the quality gate."""
        square = crop.shape[0] == crop.shape[1] and crop.shape[0] >= MIN_CROP
        return self.on and square and quality_problem is None

    def offer(self, fit: dict[int, np.ndarray], camera: float) -> None:
        """The faces fit for an embedding now (track -> crop): the one due goes to the worker."""
        due = self.people.due_for_embedding(fit, camera)
        if due is None:
            return
        diagnostics = self._node.diagnostics
        if self.worker.put((due, fit[due], camera)):
            diagnostics.count("identity_dropped")
        diagnostics.count("identity_requests")

    def save(self) -> None:
        path, people = self._database(), self.people
        if path is None or people is None:
            return
        try:
            with people.lock:
                saved = people.registry.save(path)
        except OSError as error:
            self._log().error(f"cannot write persons.database {path}: {error}")
            return
        self._log().info(f"{saved} known persons written to persons.database")

    def close(self) -> None:
        backend, self.backend, self.people = self.backend, None, None
        if backend is not None:
            backend.close()

    def _identify(self, track_id: int, crop: np.ndarray, camera: float) -> None:
        """Identity worker: embed one face and match it to a person."""
        backend, people = self.backend, self.people
        if not self.on or people is None:
            return
        embedding = backend.embed(crop)
        if embedding is None:
            self._node.diagnostics.count("identity_no_face")
            return
        match = people.identified(track_id, embedding, camera)
        if match is None:
            return
        self._node.diagnostics.count(f"identity_{match.outcome}")
        if match.previous != match.person_id:
            self._log().info(
                f"face track {track_id} is person {match.person_id} ({match.outcome}, "
                f"visit {people.person(match.person_id).visits})"
            )
            self._on_identified(track_id, match)

    def _on_forget(self, request, response):
        people = self.people
        if people is None:
            response.success, response.message = False, "user_profiler_node is not configured"
            return response
        wanted = request.person_id.strip()
        forgotten = people.forget(wanted or None)
        self.save()
        response.forgotten = len(forgotten)
        response.success = bool(forgotten) or not wanted
        if wanted and not forgotten:
            response.message = f"no known person {wanted!r}: known are {people.registry.known()}"
        else:
            response.message = f"forgot {len(forgotten)} person(s)"
            self._node.diagnostics.count("persons_forgotten", len(forgotten))
        self._log().info(f"forget request: {response.message}")
        return response

    def _database(self) -> Path | None:
        path = self._node.params["persons.database"]
        return Path(path).expanduser() if path else None

    def _log(self):
        return self._node.get_logger()
