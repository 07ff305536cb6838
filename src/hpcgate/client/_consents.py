"""The SDK's consent methods: list, read, approve and deny the requests held for the
caller's consent (``[consent]`` on the gateway). A request the SDK makes that is held
raises :class:`~hpcgate.model.consents.ConsentPending` (its ``answer`` names the request,
and a new token's secret)."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, request
from hpcgate.client._sync import SyncCore
from hpcgate.model.consents import ConsentRequest, ConsentState


def consents_call(state: ConsentState | str | None, limit: int) -> Call:
    params: dict[str, str | int] = {"limit": limit}
    if state is not None:
        params["state"] = ConsentState(state).value
    return request("GET", "consents", params=params)


def consent_call(consent_id: str) -> Call:
    return request("GET", "consents", consent_id)


def decide_call(consent_id: str, approve: bool) -> Call:
    return request("POST", "consents", consent_id, "approve" if approve else "deny")


class SyncConsents(SyncCore):
    """Consent methods of :class:`~hpcgate.Client`."""

    def consents(
        self, *, state: ConsentState | str | None = None, limit: int = 50
    ) -> list[ConsentRequest]:
        """The caller's consent requests, newest first (only those in ``state``)."""
        return self._call(consents_call(state, limit), list[ConsentRequest])

    def consent(self, consent_id: str) -> ConsentRequest:
        """One of the caller's consent requests."""
        return self._call(consent_call(consent_id), ConsentRequest)

    def approve_consent(self, consent_id: str) -> ConsentRequest:
        """Approve it: the credential it held acts from now on. The client's token must be
        another than the one that asked (Forbidden otherwise)."""
        return self._call(decide_call(consent_id, True), ConsentRequest)

    def deny_consent(self, consent_id: str) -> ConsentRequest:
        """Deny it: the credential it held stays refused (a new token is revoked)."""
        return self._call(decide_call(consent_id, False), ConsentRequest)


class AsyncConsents(AsyncCore):
    """Consent methods of :class:`~hpcgate.AsyncClient`."""

    async def consents(
        self, *, state: ConsentState | str | None = None, limit: int = 50
    ) -> list[ConsentRequest]:
        """As :meth:`Client.consents`."""
        return await self._call(consents_call(state, limit), list[ConsentRequest])

    async def consent(self, consent_id: str) -> ConsentRequest:
        """As :meth:`Client.consent`."""
        return await self._call(consent_call(consent_id), ConsentRequest)

    async def approve_consent(self, consent_id: str) -> ConsentRequest:
        """As :meth:`Client.approve_consent`."""
        return await self._call(decide_call(consent_id, True), ConsentRequest)

    async def deny_consent(self, consent_id: str) -> ConsentRequest:
        """As :meth:`Client.deny_consent`."""
        return await self._call(decide_call(consent_id, False), ConsentRequest)
