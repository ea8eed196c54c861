"""API key text: how a key is made, parsed and hashed. The store keeps only the hash.

A key reads `dl_<prefix>_<secret>`: the prefix (8 hex digits) finds the row and is safe to
show in lists and logs; the secret is 32 random bytes, URL-safe base64.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "dl"
_PREFIX_HEX_DIGITS = 8


def new_key() -> tuple[str, str]:
    """A fresh (prefix, plaintext key)."""
    prefix = secrets.token_hex(_PREFIX_HEX_DIGITS // 2)
    return prefix, f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"


def key_prefix(plaintext: str) -> str | None:
    """The prefix of a well-formed key, else None."""
    parts = plaintext.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[2]:
        return None
    prefix = parts[1]
    if len(prefix) != _PREFIX_HEX_DIGITS or any(c not in "0123456789abcdef" for c in prefix):
        return None
    return prefix


def hash_key(plaintext: str) -> str:
    """sha256 of the whole key, hex. Keys are 256-bit random, so no salt or slow hash is needed."""
    return hashlib.sha256(plaintext.encode("utf-8", "surrogatepass")).hexdigest()


def hashes_match(plaintext: str, stored_sha256: str) -> bool:
    """Constant-time comparison of a presented key with a stored hash."""
    return hmac.compare_digest(hash_key(plaintext), stored_sha256)
