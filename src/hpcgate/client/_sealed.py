"""End-to-end encryption of an invocation's events, the caller's side.

The caller makes an ephemeral X25519 key pair and sends its public key with the invocation
(``Hpcgate-Encrypt``); the worker answers with a ``key`` event holding its own. Both derive
one AES-256-GCM key with HKDF-SHA256 (info: a label, the invocation id and both public
keys), and every later event's ``data`` is ``{"sealed": base64(ciphertext + tag)}`` of the
plain event ``{"type", "data"[, "encoding"]}``, with the seq as nonce and (label, id, seq,
type) as associated data. The worker's side is :class:`hpcgate.worker.Sealer`; the two
share no code (the worker is one standalone file), only this scheme.

An :class:`Opener` takes the events in order and refuses, with :class:`SealBroken`, any
that is not the next one, fails authentication, or comes unsealed: the gateway's own
errors (``WorkerLost``, ``NoWorker``, ...) cannot be sealed by the worker, so they arrive
as :class:`SealBroken` too, their unauthenticated claim in ``error``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from hpcgate.client._errors import SealBroken
from hpcgate.model.functions import InvocationError

LABEL = b"hpcgate-e2e-v1"
HEADER = "Hpcgate-Encrypt"
KEY_TEXT = 43  # 32 bytes in base64url without padding
Plain = dict[str, Any]  # an event opened: {"type", "data"[, "encoding"]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def context(ident: str, client_key: bytes, worker_key: bytes) -> bytes:
    return b"\0".join((LABEL, ident.encode("ascii"), client_key, worker_key))


def aad(ident: str, seq: int, kind: str) -> bytes:
    return b"\0".join((LABEL, ident.encode("ascii"), str(seq).encode(), kind.encode()))


def nonce(seq: int) -> bytes:
    return seq.to_bytes(12, "big")


def derive(private: X25519PrivateKey, ident: str, worker_key: bytes) -> AESGCM:
    """The invocation's AES-256-GCM key, as the worker derives it."""
    mine = private.public_key().public_bytes_raw()
    shared = private.exchange(X25519PublicKey.from_public_bytes(worker_key))
    info = context(ident, mine, worker_key)
    return AESGCM(HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(shared))


class Opener:
    """One encrypted invocation, the caller's side: its key pair, and the events' key once
    the worker's ``key`` event came. :meth:`open` takes each event in order."""

    def __init__(self) -> None:
        self._private = X25519PrivateKey.generate()
        self.public_key = b64url(self._private.public_key().public_bytes_raw())
        self._aead: AESGCM | None = None
        self.last = 0  # the seq of the last event opened

    def open(self, ident: str, seq: int, kind: str, data: Any) -> Plain | None:
        """The event opened (None for the key event); SealBroken for one out of order,
        unsealed, or failing authentication."""
        if seq != self.last + 1:
            why = "replayed" if seq <= self.last else "reordered or dropped"
            raise SealBroken(f"event {seq} came where {self.last + 1} was due: {why}")
        if kind == "key":
            self._agree(ident, seq, data)
            return None
        sealed = _sealed(seq, kind, data)  # one in clear: refused (a gateway error's claim)
        if self._aead is None:
            raise SealBroken(f"event {seq} ({kind}) came before the worker's key")
        plain = self._open(ident, seq, kind, sealed)
        self.last = seq
        return plain

    def _agree(self, ident: str, seq: int, data: Any) -> None:
        if self._aead is not None or seq != 1:
            raise SealBroken(f"a second key event ({seq}): refused")
        text = data.get("public_key") if isinstance(data, dict) else None
        if not isinstance(text, str) or len(text) != KEY_TEXT:
            raise SealBroken("the worker's key event holds no key")
        try:
            self._aead = derive(self._private, ident, base64.urlsafe_b64decode(text + "="))
        except (ValueError, binascii.Error):
            raise SealBroken("the worker's key event holds no key") from None
        self.last = seq

    def _open(self, ident: str, seq: int, kind: str, sealed: bytes) -> Plain:
        assert self._aead is not None
        try:
            text = self._aead.decrypt(nonce(seq), sealed, aad(ident, seq, kind))
        except InvalidTag:
            why = f"event {seq} fails authentication: altered, moved or replayed"
            raise SealBroken(why) from None
        plain = json.loads(text)
        if not isinstance(plain, dict) or plain.get("type") != kind:
            raise SealBroken(f"event {seq} is not the {kind} it claims")  # not by the worker
        return plain


def _sealed(seq: int, kind: str, data: Any) -> bytes:
    """The ciphertext of a sealed event; SealBroken for one in clear (the gateway's own
    error: its claim, unauthenticated, in ``error``)."""
    sealed = data.get("sealed") if isinstance(data, dict) else None
    if not isinstance(sealed, str):
        raise _unsealed(seq, kind, data)
    try:
        return base64.b64decode(sealed, validate=True)
    except (ValueError, binascii.Error):
        raise SealBroken(f"event {seq} is not sealed base64") from None


def _unsealed(seq: int, kind: str, data: Any) -> SealBroken:
    if kind != "error" or not isinstance(data, dict):
        return SealBroken(f"event {seq} ({kind}) came unencrypted: refused")
    claim = InvocationError(
        type=str(data.get("type") or "Error")[:256], message=str(data.get("message") or "")
    )
    return SealBroken(
        f"the invocation ended with an error the worker did not seal (made by the gateway,"
        f" unauthenticated): {claim.type}: {claim.message}",
        error=claim,
    )
