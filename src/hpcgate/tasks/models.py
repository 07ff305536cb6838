"""What a task is, as the API shows it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


class TaskState(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskProgress(BaseModel):
    done: int = Field(0, description="How much is done, in `unit`")
    total: int | None = Field(None, description="How much there is in all, when known")
    unit: str = Field("bytes", description="What done and total count")


class Task(BaseModel):
    """A long operation: poll it until its state is no longer `running`."""

    id: str
    kind: str = Field(description="copy, move, compress, extract, ...")
    system: str
    state: TaskState
    progress: TaskProgress
    request: dict[str, Any] = Field(description="What was asked")
    result: dict[str, Any] | None = Field(None, description="What it produced, once completed")
    error: dict[str, Any] | None = Field(
        None, description="Why it failed: a problem document (type, title, status, detail)"
    )
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
