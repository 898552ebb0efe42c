"""The veil HTTP server, wired: a frozen classifier (a `Backend`) behind FastAPI, fed 8-bit
obfuscated images.

Routes: veil's own `POST /v1/classify` (v1.py), the Open Inference Protocol under `/v2` (v2.py),
`GET /healthz` and `GET /metrics` (status.py), and the OpenAPI document at `/openapi.json`
(`/docs`). Both protocols decode their requests and classify through one `DataPlane`
(dataplane.py: the micro-batcher behind it). In front of them all, `GuardMiddleware` reads each
body whole (bounded in size and time) and counts every request; errors are answered by the
handlers in errors.py.

The server speaks plain HTTP: put TLS in front of it (a reverse proxy such as Caddy or nginx)
whenever it leaves the machine, and set a bearer token. Received images are decoded in memory
(the body size is capped below the multipart spooling threshold, so nothing touches the disk)
and are never logged.
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

from ..core.version import VERSION
from ..core.wire import CLASSIFY
from .backend import Backend, OnReceive
from .batching import MicroBatcher
from .config import ROUTES, ServerConfig
from .dataplane import DataPlane
from .errors import add_error_handlers
from .middleware import GuardMiddleware
from .prometheus import Metrics
from .status import add_status_routes
from .v1 import add_v1_routes
from .v2 import add_v2_routes, model_paths, served_model, served_paths

__all__ = ["ServerConfig", "create_app"]


def create_app(predictor: Backend, config: ServerConfig | None = None,
               on_receive: OnReceive | None = None) -> FastAPI:
    """The ASGI app. `on_receive(raw_pngs, images)` sees every accepted upload (tests only)."""
    config = config or ServerConfig()
    metrics = Metrics()
    metrics.watch_inference(lambda: predictor.restarts, lambda: predictor.timeouts)
    batcher = MicroBatcher(predictor, config.max_batch, config.max_wait_ms, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        await batcher.start()
        try:
            yield
        finally:
            await batcher.stop()

    # redirect_slashes off: `POST .../infer/` is a 404 naming the path, not an empty 307
    app = FastAPI(title="veil", version=VERSION, lifespan=lifespan, redirect_slashes=False,
                  description="Classifies 8-bit obfuscated images with a frozen classifier. "
                              "Put TLS in front of this server.")
    app.state.predictor, app.state.config, app.state.metrics = predictor, config, metrics
    app.state.batcher = batcher
    plane = DataPlane(batcher, on_receive)
    add_error_handlers(app, metrics)
    model = served_model(predictor)
    v2 = model_paths(model)
    app.add_middleware(GuardMiddleware, config=config, metrics=metrics, plane=plane,
                       classifying={CLASSIFY, v2["infer"], v2["infer_versioned"]},
                       routes=ROUTES | served_paths(model))
    add_v1_routes(app, predictor, config, plane)
    add_v2_routes(app, predictor, config, plane)
    add_status_routes(app, predictor, config, metrics)
    return app
