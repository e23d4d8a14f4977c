"""Secrets kept in files (the development secret key, the demo PLC password): created 0600, never readable by others."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def secret_file_text(path: Path, make: Callable[[], str]) -> str:
    """Return the secret kept in `path`, first writing `make()` there if the file is absent.

    The file is born with mode 0600 (a temporary file opened with O_CREAT | O_EXCL, then hard-linked into place), so
    there is no moment at which it exists with wider permissions or half-written; when two processes race, the first
    link wins and both read its secret.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(make())
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process made it first: its secret is the one
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_text().strip()
