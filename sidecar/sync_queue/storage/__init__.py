"""Crash-safe storage for sync-queue: a journal of opaque records plus snapshots.

The storage layer knows no queue semantics: the engine hands it records (bytes) and
snapshot blobs (bytes) and gets them back, in order, after a crash. See ``store`` for the
API and the durability modes, and ``format`` for the file layout.

On-disk format (version 1)
--------------------------
One data directory (mode 0700; files 0600) holds:

- ``LOCK``: empty; ``flock``-ed exclusively by the open store (shared by ``verify``).
- ``journal-<first seq, 20 digits>.log``: journal segments, in sequence order.
- ``snapshot-<last seq, 20 digits>.snap``: the newest snapshot (older ones, and segments
  it supersedes, are leftovers of an interrupted compaction, deleted on open).
- ``snapshot-*.tmp``: a snapshot being written (ignored and deleted on open).

Every segment and snapshot starts with a 92-byte file header (magic ``SYNQ``, version,
kind, encrypted flag, random file id, HKDF salt, key-check value, seq, creation time,
CRC-32), followed by blocks. A block is a 24-byte header (CRC-32 over the rest of the
header and the payload, payload length, first seq, record count, type, flags) and its
payload: the records ``u32 length || bytes`` concatenated, or the snapshot blob, then
zstd-compressed (flag bit 0, only if smaller) and AES-256-GCM-encrypted (flag bit 1:
``nonce(12) || ciphertext || tag(16)``, key = HKDF-SHA256(master, file salt,
"sync-queue/v1/<journal|snapshot>/" + file id), AAD = magic, version, kind, file id,
first seq, count, type, flags). One group commit = one block = one ``write``.

Sequence numbers start at 1 and continue without gaps across blocks and segments; a
snapshot named ``N`` includes records 1..N. Recovery: newest snapshot, then journal
records with seq > N. A bad block at the end of the last segment with no good block
after it is a torn tail if it is an append cut short (truncated, logged), or a damaged
block if it is whole (its bytes are moved to ``quarantine-*.bin`` first, then truncated,
and reported); anything else is refused.
"""

from sync_queue.storage.codec import EncryptionService
from sync_queue.storage.fileio import FileIO
from sync_queue.storage.recovery import Quarantined, Recovery, TornTail
from sync_queue.storage.store import Durability, Fold, Store, StoreStats
from sync_queue.storage.verify import FileReport, Problem, VerifyReport, verify

__all__ = [
    "Durability",
    "EncryptionService",
    "FileIO",
    "FileReport",
    "Fold",
    "Problem",
    "Quarantined",
    "Recovery",
    "Store",
    "StoreStats",
    "TornTail",
    "VerifyReport",
    "verify",
]
