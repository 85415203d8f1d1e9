"""Secrets the server must give back later, kept in the store so that the store alone cannot read them.

Tokens the proxy checks are stored by digest (deviceflow.store.digest). Two
kinds cannot be: they are handed out again, so they are kept encrypted.

- FLOW=DEVICE: the upstream token response waits in the flow record for the
  device's poll. When the flow starts, a key pair is derived from the
  device_code and only its public key is stored; the response is sealed to it
  (ephemeral X25519, HKDF-SHA256, AES-GCM), so that only the one who presents
  the device_code can open it. The server itself forgets device codes, so a
  copy of the store opens nothing.
- The proxy's Enedis client_credentials token: every instance sharing the
  store must read it, and every one has CLIENT_SECRET, so it is encrypted
  under a key derived from that secret (AES-GCM).

Stored values are base64 text, which both SQLite (JSON) and MongoDB keep as is.
A value that does not open (wrong code or secret, altered record) raises
`CannotOpen`, with no detail: the caller decides what that means.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from deviceflow import randomness

# HKDF info strings: each derived key serves one purpose only.
DEVICE_CODE_KEY_INFO = b"deviceflow/v1 x25519 key of a device_code"
SEALED_BOX_KEY_INFO = b"deviceflow/v1 sealed box aes-256-gcm key"
SECRET_KEY_INFO = b"deviceflow/v1 aes-256-gcm key of the client secret"

KEY_SIZE = 32  # AES-256, and an X25519 key
NONCE_SIZE = 12  # AES-GCM's standard nonce


class CannotOpen(Exception):
    """The value does not open with this device code or secret (or was altered)."""


def public_key_for(device_code: str) -> str:
    """The public key to seal to, for a device code (base64); only this is stored."""
    return _text(_private_key(device_code).public_key().public_bytes_raw())


def seal_to(public_key: str, data: bytes, aad: bytes) -> str:
    """`data` sealed to `public_key` (from `public_key_for`), bound to `aad`: base64 text."""
    recipient = base64.b64decode(public_key)
    ephemeral = X25519PrivateKey.generate()
    sender = ephemeral.public_key().public_bytes_raw()
    key = _box_key(ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient)), sender, recipient)
    nonce = randomness.token_bytes(NONCE_SIZE)
    return _text(sender + nonce + AESGCM(key).encrypt(nonce, data, aad))


def open_with(device_code: str, sealed: str, aad: bytes) -> bytes:
    """What `seal_to` sealed to this device code's public key, with the same `aad`; else CannotOpen."""
    raw = _bytes(sealed)
    sender, nonce, ciphertext = raw[:KEY_SIZE], raw[KEY_SIZE : KEY_SIZE + NONCE_SIZE], raw[KEY_SIZE + NONCE_SIZE :]
    private = _private_key(device_code)
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(sender))
        key = _box_key(shared, sender, private.public_key().public_bytes_raw())
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except (ValueError, InvalidTag):  # a short or low-order sender key, a wrong key, altered bytes
        raise CannotOpen("the sealed value does not open with this device code") from None


def encrypt(secret: str, data: bytes) -> str:
    """`data` encrypted under a key derived from `secret`: base64 text."""
    nonce = randomness.token_bytes(NONCE_SIZE)
    return _text(nonce + AESGCM(_secret_key(secret)).encrypt(nonce, data, None))


def decrypt(secret: str, blob: str) -> bytes:
    """What `encrypt` encrypted with the same secret; else CannotOpen."""
    raw = _bytes(blob)
    try:
        return AESGCM(_secret_key(secret)).decrypt(raw[:NONCE_SIZE], raw[NONCE_SIZE:], None)
    except (ValueError, InvalidTag):
        raise CannotOpen("the value does not open with this secret") from None


def _private_key(device_code: str) -> X25519PrivateKey:
    # The device code holds 256 random bits: HKDF needs no salt to make a key of it.
    return X25519PrivateKey.from_private_bytes(_hkdf(device_code.encode(), DEVICE_CODE_KEY_INFO))


def _box_key(shared: bytes, sender: bytes, recipient: bytes) -> bytes:
    # Both public keys in the salt tie the key to this one exchange (as ECIES and libsodium's sealed boxes do).
    return _hkdf(shared, SEALED_BOX_KEY_INFO, salt=sender + recipient)


def _secret_key(secret: str) -> bytes:
    return _hkdf(secret.encode(), SECRET_KEY_INFO)


def _hkdf(material: bytes, info: bytes, salt: bytes | None = None) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=salt, info=info).derive(material)


def _text(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _bytes(text) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError, ValueError):
        raise CannotOpen("the value is not base64") from None
