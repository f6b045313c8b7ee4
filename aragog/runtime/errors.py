"""Errors of the serving runtime: why a run was refused or did not finish.

Each is an :class:`~aragog.errors.AragogError` with a one-line message, so the HTTP
server can map it to a status code and the CLI can print it as is.
"""

from __future__ import annotations

from aragog.errors import AragogError


class DeploymentError(AragogError):
    """A deployment file is malformed or names something that does not exist."""


class UnknownWorkflow(AragogError):
    """A run names a workflow the deployment does not serve."""


class InvalidInput(AragogError):
    """A run's input lacks a field its workflow's templates read, or is not text."""


class QueueFull(AragogError):
    """The meta-queue holds as many runs as the deployment allows; retry later."""


class NotReady(AragogError):
    """The runtime's engines are still starting (or it is shutting down)."""


class RunFailed(AragogError):
    """An accepted run ended with an error (an engine failed or timed out)."""


class EngineStartError(AragogError):
    """An engine could not be started; the runtime stopped the others."""
