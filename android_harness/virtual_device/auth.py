"""Device-side RSA authentication: the token to sign, and checking a signature against allowed keys.

adb keys are 2048-bit RSA; a public key travels as base64 of Android's RSAPublicKey struct
(modulus and R^2 as little-endian word arrays), followed by " user@host". The host signs the
20-byte token as if it were a SHA-1 digest (PKCS#1 v1.5 with SHA-1's DigestInfo, as adbd's
RSA_verify(NID_sha1, ...) checks it). Only such a signature proves the host holds the key: a
public key alone is public.
"""
from __future__ import annotations

import base64
import os
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

TOKEN_SIZE = 20
_WORDS = 64  # 2048-bit modulus in 32-bit words
_STRUCT = struct.Struct(f"<II{_WORDS * 4}s{_WORDS * 4}sI")


def new_token() -> bytes:
    return os.urandom(TOKEN_SIZE)


def parse_public_key(text: str | bytes) -> rsa.RSAPublicKey:
    """An adb public key (``adbkey.pub`` contents, with or without the trailing user@host)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    fields = text.strip().split()
    try:
        blob = base64.b64decode(fields[0].rstrip("\0"), validate=True) if fields else b""
        words, _n0inv, modulus, _rr, exponent = _STRUCT.unpack(blob[:_STRUCT.size])
    except (ValueError, struct.error) as err:
        raise ValueError(f"not an adb public key (base64 of a {_STRUCT.size}-byte RSAPublicKey): {err}") from None
    if words != _WORDS:
        raise ValueError(f"unsupported adb key size ({words * 32} bits)")
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "little")).public_key()


def verify(token: bytes, signature: bytes, keys: list[rsa.RSAPublicKey]) -> bool:
    """True when ``signature`` is ``token`` signed by the private half of one of ``keys``."""
    if len(token) != TOKEN_SIZE:
        return False  # no challenge was sent (or it was already used): nothing can be a valid answer
    for key in keys:
        try:
            key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
            return True
        except (InvalidSignature, ValueError):
            continue
    return False

