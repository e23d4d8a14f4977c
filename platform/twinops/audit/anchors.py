"""Signed chain heads kept outside the database: an Ed25519 key file and an append-only JSON-lines anchor log.

An anchor is one line: {"event_id", "sha256", "occurred_at", "anchored_at", "key", "signature"}. The signature
(hex) is Ed25519 over MESSAGE_PREFIX + the canonical JSON of the first four fields; "key" is the public key (hex)
for reading convenience only: verification uses the key it is given, never the one written in the line.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from twinops.audit.canonical import canonical_dumps

MESSAGE_PREFIX = b"twinops audit anchor v1\n"
_SIGNED = ("event_id", "sha256", "occurred_at", "anchored_at")


class AnchorKeyError(Exception):
    """The signing key file is missing, unreadable, not private to its owner, or not an Ed25519 key."""


@dataclass(frozen=True)
class Anchor:
    """A signed chain head: event `event_id` had hash `sha256` (written at `occurred_at`) when signed at `anchored_at`."""

    line: int  # 1-based line number in the anchor log
    event_id: int
    sha256: str
    occurred_at: str
    anchored_at: str
    signature_ok: bool


def signing_key(path: Path, *, create: bool) -> Ed25519PrivateKey:
    """Return the private key in `path`, creating it (mode 0600, atomically) when absent and `create` is set."""
    if create and not path.exists():
        _key_create(path)
    try:
        st = path.stat()
        if stat.S_IMODE(st.st_mode) & 0o077:
            raise AnchorKeyError(
                f"audit signing key {path} is readable by others (mode {st.st_mode & 0o777:o}); chmod 600 it"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise AnchorKeyError(f"audit signing key {path} does not exist; run `twinops audit key` to create it") from None
    except ValueError as exc:
        raise AnchorKeyError(f"audit signing key {path} is not a PEM private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AnchorKeyError(f"audit signing key {path} is not an Ed25519 key")
    return key


def _key_create(path: Path) -> None:
    """Write a new key to a private temporary file, then link it into place: readers never see half a key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)  # fails if another process created the key first: theirs is kept
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def public_key_hex(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """Return the raw 32-byte public key as hex."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def public_key_from_hex(text: str) -> Ed25519PublicKey:
    """Return the public key given as 64 hex digits; ValueError when it is not one."""
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an Ed25519 public key (64 hex digits)") from None


def _message(fields: dict[str, Any]) -> bytes:
    return MESSAGE_PREFIX + canonical_dumps({k: fields[k] for k in _SIGNED}).encode("utf-8")


def anchor_append(
    *, log: Path, key: Ed25519PrivateKey, event_id: int, sha256: str, occurred_at: datetime, anchored_at: datetime
) -> dict[str, Any]:
    """Sign a chain head and append it to the anchor log as one line; return the line's fields."""
    fields: dict[str, Any] = {
        "event_id": event_id,
        "sha256": sha256,
        "occurred_at": occurred_at.isoformat(),
        "anchored_at": anchored_at.isoformat(),
    }
    fields["key"] = public_key_hex(key)
    fields["signature"] = key.sign(_message(fields)).hex()
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # one writer at a time: lines never interleave
        fh.write(canonical_dumps(fields) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return fields


def anchors_read(*, log: Path, public_key: Ed25519PublicKey) -> list[Anchor]:
    """Return every anchor in the log, each marked whether its signature verifies under `public_key`."""
    if not log.exists():
        return []
    anchors = []
    with open(log, encoding="utf-8") as fh:
        for number, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            anchors.append(_anchor_parse(number, text, public_key))
    return anchors


def _anchor_parse(number: int, text: str, public_key: Ed25519PublicKey) -> Anchor:
    try:
        fields = json.loads(text)
        event_id, sha256 = int(fields["event_id"]), str(fields["sha256"])
        occurred_at, anchored_at = str(fields["occurred_at"]), str(fields["anchored_at"])
        signature = bytes.fromhex(str(fields["signature"]))
    except (ValueError, KeyError, TypeError):
        return Anchor(number, 0, "", "", "", signature_ok=False)
    try:
        public_key.verify(signature, _message(fields))
        ok = True
    except InvalidSignature:
        ok = False
    return Anchor(number, event_id, sha256, occurred_at, anchored_at, signature_ok=ok)


def anchor_last(*, log: Path, public_key: Ed25519PublicKey) -> Anchor | None:
    """Return the log's last anchor (marked whether its signature verifies), reading only the file's tail.

    Its `line` is 0: counting the lines before it would read the whole log, which grows by one line a minute.
    """
    if not log.exists():
        return None
    with open(log, "rb") as fh:
        pos = fh.seek(0, os.SEEK_END)
        tail = b""
        while pos > 0:  # read back 4 KiB at a time until the tail holds the whole last line
            step = min(4096, pos)
            pos -= step
            fh.seek(pos)
            tail = fh.read(step) + tail
            if b"\n" in tail.rstrip(b"\n"):
                break
    text = tail.rstrip(b"\n").rsplit(b"\n", 1)[-1].decode("utf-8", "replace")
    return _anchor_parse(0, text, public_key) if text.strip() else None
