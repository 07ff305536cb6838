"""What the OpenAI-compatible routes answer themselves (the rest is the backends')."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ModelCard(BaseModel):
    id: str = Field(description="The model's name, as requests give it in 'model'")
    object: Literal["model"] = "model"
    created: int = Field(
        ge=0, le=2**53 - 1, description="When its service was created (Unix seconds)"
    )
    owned_by: str = Field(description="The service that serves it")


class ModelList(BaseModel):
    """The models of the services the caller may use, in OpenAI's list format."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
