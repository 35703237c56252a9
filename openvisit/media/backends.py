"""Which code serves each media backend name: one table, plain imports, one lazy import.

``visit.media_backend`` names the backend per visit (set from ``OPENVISIT_MEDIA_BACKEND``
when the visit opens), so visits in progress keep theirs when the setting changes. The mesh
and Janus need nothing beyond OpenVisit's own dependencies; LiveKit's SDK is the
``livekit`` extra, imported in :func:`_livekit` only, where a visit uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError
from openvisit.media.backend import MediaBackend
from openvisit.media.janus.backend import janus_backend
from openvisit.media.mesh.backend import mesh_backend

if TYPE_CHECKING:  # the type only: the module needs the livekit extra
    from openvisit.media.livekit.backend import LiveKitBackend


def _livekit(app: AppContext) -> MediaBackend:
    try:  # optional backend: livekit-api (the ``livekit`` extra)
        from openvisit.media.livekit.backend import livekit_backend
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "livekit":
            raise ConfigurationError(
                "A visit uses the LiveKit media backend but its library is not installed: "
                "pip install 'openvisit[livekit]'.") from exc
        raise
    return livekit_backend(app)


BACKENDS: dict[str, Callable[[AppContext], MediaBackend]] = {
    "mesh": mesh_backend,
    "janus": janus_backend,
    "livekit": _livekit,
}


def backend_named(app: AppContext, name: str) -> MediaBackend:
    """This process's backend ``name``, made on first use (kept in ``app.services``)."""
    made = app.services.media_backends.get(name)
    if made is None:
        factory = BACKENDS.get(name)
        if factory is None:
            raise ConfigurationError(
                f"Unknown media backend {name!r}; expected one of {', '.join(BACKENDS)}.")
        made = app.services.media_backends[name] = factory(app)
    return made


def livekit(app: AppContext) -> LiveKitBackend:
    """The LiveKit backend itself (its webhook receiver and token verifier)."""
    return cast("LiveKitBackend", backend_named(app, "livekit"))
