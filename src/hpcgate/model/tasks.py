"""What a task is, as the API shows it."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from hpcgate.model.bounds import INT64_MAX


class TaskState(StrEnum):
    """A task's state: ``running`` until it ends in one of the other three, for good."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskProgress(BaseModel):
    """How far a task has come, as its work last reported."""

    done: int = Field(0, ge=0, le=INT64_MAX, description="How much is done, in `unit`")
    total: int | None = Field(
        None, ge=0, le=INT64_MAX, description="How much there is in all, when known"
    )
    unit: str = Field("bytes", description="What done and total count: bytes, files, ...")
    message: str | None = Field(None, description="What the work is doing now, if it says")


class Task(BaseModel):
    """A long operation: poll it until its state is no longer `running`."""

    id: str = Field(description="The task's id (32 hex digits)")
    kind: str = Field(description="copy, move, compress, extract, ...")
    system: str = Field(description="The system the task works on")
    state: TaskState = Field(description="running, then completed, failed or cancelled")
    progress: TaskProgress = Field(description="Live while running; the last report after")
    request: dict[str, Any] = Field(description="What was asked")
    result: dict[str, Any] | None = Field(None, description="What it produced, once completed")
    error: dict[str, Any] | None = Field(
        None, description="Why it failed: a problem document (type, title, status, detail)"
    )
    created_at: datetime = Field(description="When the task was started")
    updated_at: datetime = Field(description="When its record last changed")
    ended_at: datetime | None = Field(None, description="When it ended; null while running")
