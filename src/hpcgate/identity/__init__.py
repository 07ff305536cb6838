"""Identities from outside hpcgate: OpenID Connect access tokens of trusted providers.

``discovery`` reads a provider's metadata, ``keys`` keeps its signing keys, ``verify``
checks one JWT against one provider, ``introspection`` asks a provider about an opaque
token (RFC 7662), ``claims`` maps verified claims to a :class:`Principal`, and ``service``
routes a bearer token to the right provider and caches what it verified.
"""
