"""What a gateway tells a command line about logging in through an OpenID provider."""

from __future__ import annotations

from pydantic import BaseModel, Field


class LoginProvider(BaseModel):
    """A trusted provider the command line may log in through (the device flow, RFC 8628)."""

    name: str = Field(description="The provider's name in the gateway's configuration")
    issuer: str = Field(description="The issuer: its discovery document names the endpoints")
    client_id: str = Field(description="The provider's public client for the command line")
    scope: str = Field(description="The scope to ask for (space-separated)")
