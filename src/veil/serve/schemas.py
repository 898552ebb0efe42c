"""Response models: what the OpenAPI document promises each endpoint answers."""

from __future__ import annotations

from pydantic import BaseModel


class TopK(BaseModel):
    label: str
    class_index: int
    probability: float


class PredictionOut(BaseModel):
    index: int
    label: str
    class_index: int
    confidence: float
    top_k: list[TopK]


class ClassifierInfo(BaseModel):
    model_name: str
    sha256: str


class ClassifyResponse(BaseModel):
    predictions: list[PredictionOut]
    classifier: ClassifierInfo


class ErrorBody(BaseModel):
    error: str
    detail: str


class Health(BaseModel):
    status: str
    inference: str
    classifier: ClassifierInfo
    classes: list[str]
    image_size: list[int]
    max_images: int
    max_batch: int
    auth: bool


ERRORS = {s: {"model": ErrorBody} for s in (400, 401, 408, 413, 415, 422)}
