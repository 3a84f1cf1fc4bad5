"""API keys: configured as SHA-256 hashes, each belonging to a tenant. Transport-neutral."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from service.errors import ImosError, PermissionDenied

DEFAULT_TENANT = "default"


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyRing:
    """hash -> tenant. Empty: authentication is off and everyone is the default tenant."""

    tenants_by_hash: dict[str, str] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return bool(self.tenants_by_hash)

    def tenant_for(self, key: str | None) -> str:
        """The tenant owning this key; PermissionDenied without a valid key when keys are configured."""
        if not self.enabled:
            return DEFAULT_TENANT
        if not key:
            raise PermissionDenied("an API key is required (Authorization: Bearer <key>)")
        digest = key_hash(key)
        for known, tenant in self.tenants_by_hash.items():
            if hmac.compare_digest(known, digest):
                return tenant
        raise PermissionDenied("the API key is not valid")


def parse_keys(spec: str | None) -> dict[str, str]:
    """'tenantA:<sha256>,tenantB:<sha256>' -> {sha256: tenant}."""
    out: dict[str, str] = {}
    for item in (spec or "").split(","):
        if not item.strip():
            continue
        tenant, sep, digest = item.strip().partition(":")
        if not sep or len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest.lower()):
            raise ImosError("IMOS_API_KEYS entries look like tenant:<64 hex chars of sha256(key)>")
        out[digest.lower()] = tenant
    return out


def load_keyring(spec: str | None, path: Path | None) -> KeyRing:
    """Keys from IMOS_API_KEYS and/or a secrets file (YAML or JSON: {tenant: [sha256, ...]})."""
    hashes = parse_keys(spec)
    if path is not None:
        doc = yaml.safe_load(path.read_text()) if path.suffix in (".yaml", ".yml") else json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ImosError(f"{path.name}: expected a mapping of tenant -> list of key hashes")
        for tenant, digests in doc.items():
            hashes.update(parse_keys(",".join(f"{tenant}:{d}" for d in (digests or []))))
    return KeyRing(hashes)


def bearer(header: str | None) -> str | None:
    """The token of an 'Authorization: Bearer <token>' header."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None
