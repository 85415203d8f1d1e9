"""The server's random values: the system's randomness, read in blocks and handed out once each.

Every read of the system's randomness (`os.urandom`, `secrets.token_*`: a `getrandom` system call) lets go of
the GIL, and under load, with the server's threads waiting for it, winning it back costs about 50 µs of
hand-offs between threads (docs/performance.md). Read a block at a time, the randomness a request needs
(a device code and a user code, two tokens, a state and a PKCE verifier, a nonce) costs no system call at
all most of the time.

`token_bytes`, `token_hex` and `token_urlsafe` mean what the `secrets` functions of the same names mean
(`nbytes` random bytes, 32 by default) and give text of the same length and alphabet. Each byte read from
the system is handed out at most once, whatever the threads; a forked child empties the pool, so that
parent and child never hand out the same bytes.

The trade-off: the pool holds the next bytes to hand out, at most one block of them, so someone who can read
this process's memory could read the next tokens before they are made. Such a reader already reads far more:
the sealing keys, the configured secrets (`CLIENT_SECRET`), the tokens and device codes in flight. Bytes
already handed out stay in the block until the next read, as Python's freed strings stay in memory until it
is reused: nothing is wiped, here or elsewhere.
"""

from __future__ import annotations

import base64
import os
import threading

# 4 KiB: one read serves about 85 `POST /device/code` (a device code and its user code take 48 bytes), so the
# read's cost is spread thin; a bigger block would save little more and keep more of the next tokens in memory.
BLOCK = 4096
# What `secrets` gives without a size: 256 bits.
DEFAULT_NBYTES = 32

# The reader, looked up at every read so that a test can count the reads or see which bytes went out.
system_randomness = os.urandom

_lock = threading.Lock()
_block = b""
_used = 0  # bytes of `_block` already handed out


def token_bytes(nbytes: int | None = None) -> bytes:
    """`nbytes` random bytes, never handed out before."""
    global _block, _used
    size = DEFAULT_NBYTES if nbytes is None else nbytes
    if size < 0:
        raise ValueError("negative argument not allowed")  # os.urandom's own words
    if size > BLOCK:
        return system_randomness(size)
    with _lock:
        start, end = _used, _used + size
        if end <= len(_block):
            _used = end
            return _block[start:end]
        # The rest of this block and the beginning of the next: no byte read is left unused.
        rest = _block[start:]
        _block = system_randomness(BLOCK)
        _used = size - len(rest)
        return rest + _block[:_used]


def token_hex(nbytes: int | None = None) -> str:
    """`nbytes` random bytes as lowercase hexadecimal (two characters a byte)."""
    return token_bytes(nbytes).hex()


def token_urlsafe(nbytes: int | None = None) -> str:
    """`nbytes` random bytes as URL-safe base64 without padding (about 1.3 characters a byte)."""
    return base64.urlsafe_b64encode(token_bytes(nbytes)).rstrip(b"=").decode("ascii")


def empty_pool() -> None:
    """Forget the bytes not handed out yet: the next request reads the system again."""
    global _block, _used
    with _lock:
        _block, _used = b"", 0


def _empty_in_child() -> None:
    global _block, _used, _lock
    # A new lock: the parent's may have been held, at the fork, by a thread the child does not have.
    _lock = threading.Lock()
    _block, _used = b"", 0


# A forked child starts with a copy of the parent's pool: handing it out would give both the same tokens.
# (Windows has no fork, and so no register_at_fork.)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_empty_in_child)
