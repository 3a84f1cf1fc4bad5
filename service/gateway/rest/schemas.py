"""Pydantic models of the REST edge (and only of the REST edge)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Direction = Literal["both", "forward", "backward"]


class ServingOut(BaseModel):
    """How this process runs the model (only where it runs one: `imos serve`, a worker's probe port)."""

    backend: str
    device: str
    precision: str
    precision_reason: str = Field(description="why: 'as configured', or what precision=auto measured here")


class ModelOut(BaseModel):
    name: str
    version: int
    trained: bool = Field(description="false for the untrained placeholder: its masks are not meaningful")
    description: str
    max_objects: int
    architecture: dict[str, Any]
    serving: ServingOut | None = None


class ModelsOut(BaseModel):
    models: list[ModelOut]


class SessionCreated(BaseModel):
    id: str = Field(examples=["3f2c9e0d4b7a4f0c9a1e5d6b7c8d9e0f"])
    frames: int
    stream: bool = Field(False, description="a live stream (frames and masks propagate as they arrive)")


class FramesAdded(BaseModel):
    first: int = Field(description="index of the first appended frame")
    frames: int = Field(description="frames the session holds now")


class MaskSet(BaseModel):
    frame: int
    objects: list[int] = Field(description="label values found in the mask")


class PropagateIn(BaseModel):
    direction: Direction = "both"
    scope: Literal["all", "affected"] = Field(
        "all", description="all: recompute every frame from every annotation; affected: after a finished run "
                           "and one new or changed annotation (a correction), recompute only the frames it "
                           "owns (up to halfway to the neighbouring annotations), the rest keep their masks")

    model_config = {"json_schema_extra": {"examples": [{"direction": "both"}, {"scope": "affected"}]}}


class RunOut(BaseModel):
    id: int
    direction: Direction
    anchors: list[int]
    stream: bool
    num_frames: int | None
    span: list[int] | None = Field(None, description="[first, last] frame a run limited to one correction "
                                                     "recomputes; null: the whole sequence")


class RunErrorOut(BaseModel):
    """Why the current run failed: a stable code, a safe message, the attempts it took."""

    code: str
    message: str
    attempts: int


class SessionStatus(BaseModel):
    id: str
    frames: int
    height: int
    width: int
    model: str
    stream: bool
    annotated_frames: list[int]
    run: RunOut | None
    frames_done: int
    state: Literal["idle", "running", "done", "failed"]
    progress: float | None
    settings: dict[str, str]
    labels: dict[str, str] = Field(default_factory=dict, description="object number -> name")
    error: RunErrorOut | None = None


class InferenceErrorOut(BaseModel):
    """The Open Inference Protocol's error body (the /v2 routes): ``error`` the safe message, ``code`` the
    stable code of the error table."""

    error: str
    code: str


class ErrorOut(BaseModel):
    """Every error body: ``error`` the class name, ``code`` a stable code (docs/api.md lists them),
    ``detail`` a safe message, ``request_id`` the request's id (also in the x-request-id header)."""

    error: str
    code: str
    detail: str
    request_id: str | None = None
    failure_code: str | None = None
