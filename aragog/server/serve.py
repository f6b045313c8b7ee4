"""``aragog serve``: the HTTP API on uvicorn, with a clean stop on SIGINT and SIGTERM.

uvicorn catches both signals, stops accepting connections, gives open requests
:data:`GRACEFUL_SHUTDOWN_S` to finish, then runs the app's lifespan end, which fails
the runs still queued and stops every engine (vLLM's engine-core and worker processes
included) before the process exits. uvicorn then re-raises the signal, so the
process ends the way its sender expects (status 130 after SIGINT, killed by SIGTERM).
"""

from __future__ import annotations

import logging

from aragog.errors import ConfigError
from aragog.runtime.deploy import load_deployment, with_learned_routers
from aragog.runtime.errors import EngineStartError
from aragog.runtime.runtime import Runtime, RuntimeState

logger = logging.getLogger(__name__)

# Open requests get this long to finish once a stop signal arrives.
GRACEFUL_SHUTDOWN_S = 5.0


def serve(
    config_path: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    routers: tuple[str, ...] = (),
) -> None:
    """Serve the deployment at ``config_path`` until a stop signal.

    Args:
        routers: learned router files (``aragog router train``) that route their
            workflows' runs in place of the deployment's routing.

    Raises:
        DeploymentError: the deployment file or a router file is invalid (before
            anything starts).
        ConfigError: the serve extra (FastAPI, uvicorn, prometheus-client) is not
            installed.
        EngineStartError: an engine failed to start (the server stopped).
    """
    # The deployment and its routers first: a bad file is reported whatever is here.
    deployment = load_deployment(config_path)
    if routers:
        deployment = with_learned_routers(deployment, list(routers))

    # The serving parts are an optional extra.
    try:
        import uvicorn

        from aragog.server.app import create_app
        from aragog.server.metrics import ServerMetrics
    except ImportError as exc:
        raise ConfigError(
            f"aragog serve needs the serve extra (pip install 'aragog[serve]'): {exc}"
        ) from None

    # The runtime with its metrics, and the app around them.
    metrics = ServerMetrics()
    runtime = Runtime(deployment, observer=metrics)
    metrics.watch(runtime)
    config = uvicorn.Config(
        create_app(runtime, metrics, on_start_failure=lambda: _stop(server)),
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(GRACEFUL_SHUTDOWN_S),
    )
    server = uvicorn.Server(config)

    # Serve until a signal (or a failed start) stops the server.
    logger.info("serving %s on http://%s:%d", config_path, host, port)
    server.run()
    if runtime.state is RuntimeState.FAILED:
        raise EngineStartError(runtime.failure or "engines failed to start")


def _stop(server: object) -> None:
    server.should_exit = True  # type: ignore[attr-defined]
