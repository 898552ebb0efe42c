"""The server's own routes: `GET /healthz` (liveness and what is served) and `GET /metrics`
(Prometheus text)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse

from ..core.wire import HEALTH
from .backend import Backend, classifier_info
from .config import ServerConfig
from .prometheus import MEDIA_TYPE, Metrics
from .schemas import Health


def add_status_routes(app: FastAPI, predictor: Backend, config: ServerConfig,
                      metrics: Metrics) -> None:
    classifier = classifier_info(predictor)

    @app.api_route(HEALTH, methods=["GET", "HEAD"], response_model=Health,
                   summary="Liveness and what is served", responses={503: {"model": Health}})
    async def healthz() -> JSONResponse:
        # an inference process that is being replaced (dead or stuck) makes the server degraded
        inference = predictor.state
        body = {"status": "ok" if inference == "ok" else "degraded", "inference": inference,
                "classifier": classifier, "classes": predictor.classes,
                "image_size": list(predictor.image_size), "max_images": config.max_images,
                "max_batch": config.max_batch, "auth": bool(config.token)}
        return JSONResponse(body, status_code=200 if inference == "ok" else 503)

    @app.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=MEDIA_TYPE)
