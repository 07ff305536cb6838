"""The audit log as the API returns it: one record per state-changing request."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class AuditRecord(BaseModel):
    """One state-changing request (POST, PUT, PATCH, DELETE) or WebSocket connect."""

    id: str = Field(description="The record's place in the log (newest is largest)")
    at: datetime = Field(description="When the request arrived")
    user: str | None = Field(description="The caller's hpcgate user (None: not authenticated)")
    token_id: str | None = Field(description="The token or API key used")
    client: str | None = Field(
        description="On whose behalf: the OAuth client of a provider's token, or the API key"
    )
    method: str = Field(description="The HTTP method, or WEBSOCKET for a connect")
    route: str = Field(description="The route template (the path, when no route matched)")
    resource: dict[str, str] = Field(description="The route's path parameters (ids, names)")
    status: int = Field(
        ge=100, le=599, description="The answer's status (101: a WebSocket accepted)"
    )
    address: str | None = Field(description="The client's address, as the gateway saw it")
    request_id: str = Field(description="The request id (X-Request-Id, sent or made)")


class AuditPage(BaseModel):
    """One page of the audit log, newest first."""

    items: list[AuditRecord]
    next_cursor: str | None = Field(None, description="Pass as 'cursor' for the next page")
