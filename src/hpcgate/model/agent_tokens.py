"""Agent tokens as an admin sees them over the API: a request for one, the record (never
the secret), and the answer that carries the secret once. Pure models."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

#: A system's name as the configuration allows it (a table key of ``[systems.NAME]``).
SYSTEM_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
#: A Unix account's name.
AGENT_USER_PATTERN = r"^[a-z_][a-z0-9_.-]{0,31}$"


class NewAgentToken(BaseModel):
    """What an agent token is for: one system whose transport is ``agent``."""

    model_config = ConfigDict(extra="forbid")

    system: str = Field(
        pattern=SYSTEM_NAME_PATTERN,
        description="The system it lets one agent serve (configured with transport = 'agent')",
    )
    description: str = Field("", max_length=255, description="A note for admins")
    user: str | None = Field(
        None,
        pattern=AGENT_USER_PATTERN,
        description="Only an agent that says it runs as this Unix user (a user-mode agent)"
        " may use it; its connection is refused otherwise. Null: any agent, root included",
    )


class AgentTokenInfo(BaseModel):
    """An agent token, never its secret."""

    id: str
    system: str
    user: str | None = Field(description="The one user its agent must serve; null: any")
    description: str
    created_at: datetime
    revoked_at: datetime | None = Field(description="When it was revoked; null while good")


class CreatedAgentToken(AgentTokenInfo):
    token: str = Field(description="The secret, shown this once: the agent's token_file")
