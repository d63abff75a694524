"""Compression and encryption of stored bytes: zstd first, then AES-256-GCM.

Order matters: ciphertext does not compress, so data is compressed before it is encrypted.

Keys. The caller's 32-byte master key never encrypts anything itself. Every file gets its
own key, ``HKDF-SHA256(master, salt = 32 random bytes stored in the file header,
info = b"sync-queue/v1/" + purpose + file_id)``, so the nonce budget of AES-GCM (2^32
random nonces per key) is per file, far above what one segment or snapshot ever holds.
Nonces are 12 random bytes per sealed message. A *key-check value* (16 bytes of HKDF
output under its own label, so it reveals nothing about the file keys) is stored in every
file header: comparing it before decrypting anything tells "wrong key" apart from
"corrupt file".
"""

from __future__ import annotations

import os
import threading

import zstandard

from sync_queue.errors import CompressionError, EncryptionError, InvalidParams

__all__ = [
    "KEY_CHECK_SIZE",
    "KEY_SIZE",
    "NONCE_SIZE",
    "SALT_SIZE",
    "TAG_SIZE",
    "Compression",
    "EncryptionService",
    "FileCipher",
    "zstd_level",
]

KEY_SIZE = 32
SALT_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16
KEY_CHECK_SIZE = 16

# compression_level 0-9 (the seed's scale) onto zstd levels. 0 is off. zstd 1-3 run at
# 500+ MB/s while 6+ drop to ~100 MB/s for a few percent more ratio on queue records, so
# the low half of the scale stays in zstd's fast range (6, the seed's default, is zstd's
# own default 3) and only 7-9 buy ratio with CPU.
_ZSTD_LEVELS = (0, 1, 1, 2, 2, 3, 3, 6, 9, 12)


def zstd_level(compression_level: int) -> int:
    """The zstd level for a 0-9 ``compression_level`` (0 means no compression)."""
    if isinstance(compression_level, bool) or not isinstance(compression_level, int):
        raise InvalidParams("compression_level must be an integer from 0 to 9")
    if not 0 <= compression_level <= 9:
        raise InvalidParams(f"compression_level must be from 0 to 9, not {compression_level}")
    return _ZSTD_LEVELS[compression_level]


class Compression:
    """zstd one-shot frames at a fixed level; usable from several threads at once.

    python-zstandard contexts are not thread-safe but are much faster when reused, so each
    thread keeps its own compressor and decompressor.
    """

    def __init__(self, compression_level: int) -> None:
        self.level = zstd_level(compression_level)
        self._local = threading.local()

    @property
    def enabled(self) -> bool:
        return self.level > 0

    def compress(self, data: bytes) -> bytes:
        c: zstandard.ZstdCompressor | None = getattr(self._local, "c", None)
        if c is None:
            # write_content_size lets the reader check the size before allocating.
            c = zstandard.ZstdCompressor(level=self.level, write_content_size=True)
            self._local.c = c
        return c.compress(data)

    def decompress(self, data: bytes, *, max_size: int, where: str) -> bytes:
        """Decode one complete frame; anything else is a :class:`CompressionError`."""
        d: zstandard.ZstdDecompressor | None = getattr(self._local, "d", None)
        if d is None:
            d = zstandard.ZstdDecompressor()
            self._local.d = d
        try:
            size = zstandard.frame_content_size(data)
            # The size is authenticated (CRC/GCM) before we get here, but a bound still
            # keeps a bug or a crafted file from allocating gigabytes.
            if size < 0 or size > max_size:
                raise CompressionError(
                    f"{where}: compressed block declares an invalid size ({size} bytes)"
                )
            # allow_extra_data=False: trailing bytes after the frame are damage, not slack.
            return d.decompress(data, max_output_size=max_size, allow_extra_data=False)
        except zstandard.ZstdError as e:
            raise CompressionError(f"{where}: compressed block cannot be decoded ({e})") from e


class FileCipher:
    """AES-256-GCM under one file's derived key."""

    __slots__ = ("_aead",)

    def __init__(self, file_key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(file_key)

    def encrypt(self, plain: bytes, aad: bytes) -> bytes:
        """Return ``nonce || ciphertext || tag`` with a fresh random 96-bit nonce."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plain, aad)

    def decrypt(self, sealed: bytes, aad: bytes, *, where: str) -> bytes:
        if len(sealed) < NONCE_SIZE + TAG_SIZE:
            raise EncryptionError(f"{where}: encrypted block is too short")
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], aad)
        except InvalidTag as e:
            # Reached only after the stored bytes passed their CRC and the header's
            # key-check matched: the bytes are what was written, so they were changed
            # on purpose (tampering) or moved from another file/position (AAD mismatch).
            raise EncryptionError(
                f"{where}: encrypted block failed authentication "
                "(tampered with, or copied from another file or position)"
            ) from e


class EncryptionService:
    """Derives per-file AES-256-GCM keys and the key-check value from a 32-byte master key.

    The master key is held only here; it never appears in messages or ``repr``.
    """

    KEY_SIZE = KEY_SIZE

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
            raise InvalidParams(f"the encryption key must be exactly {KEY_SIZE} bytes")
        self._key = bytes(key)
        self.key_check = self._derive(None, b"sync-queue/key-check/v1", KEY_CHECK_SIZE)

    def __repr__(self) -> str:
        return "EncryptionService(<key hidden>)"

    @staticmethod
    def generate_key() -> bytes:
        """A new random 32-byte master key (from the OS CSPRNG)."""
        return os.urandom(KEY_SIZE)

    @staticmethod
    def new_salt() -> bytes:
        return os.urandom(SALT_SIZE)

    def file_cipher(self, *, purpose: bytes, file_id: bytes, salt: bytes) -> FileCipher:
        """The cipher of one file: its key depends on the file's salt, purpose and id."""
        return FileCipher(self._derive(salt, b"sync-queue/v1/" + purpose + b"/" + file_id, 32))

    def _derive(self, salt: bytes | None, info: bytes, length: int) -> bytes:
        # Imported on first use: an unencrypted queue (the default) never loads
        # ``cryptography``, 10-20 ms of every start-up.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(
            self._key
        )
