"""warden for Python applications (seed 002's device software).

    import warden
    vault = warden.open("/var/lib/warden", passphrase_file="/run/credentials/warden-passphrase")
    olga = vault.sign_in("olga", password, totp="123456")
    olga.put("patients", "p-0001", {"mrn": "MRN-42", "name": "Jane Roe"})
    with olga.record("t-1.video.sealed") as video:      # sealed as it is written
        for frame in camera:
            video.write(frame)

Every rule (roles, PHI sealing, versions, audit events, signatures) is enforced in Rust by
warden-records, exactly as for the `warden records` command. See README.md.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Union

from . import _warden
from .errors import (
    AccessDenied,
    AuthenticationError,
    IntegrityError,
    InvalidInput,
    NotFound,
    StorageError,
    WardenError,
    WrongPassphrase,
)

__all__ = [
    "open",
    "Vault",
    "Session",
    "Recording",
    "Playback",
    "WardenError",
    "AuthenticationError",
    "WrongPassphrase",
    "AccessDenied",
    "NotFound",
    "InvalidInput",
    "IntegrityError",
    "StorageError",
]

PathLike = Union[str, "os.PathLike[str]"]
Json = Dict[str, Any]


def open(  # noqa: A001 - the natural name
    data_dir: PathLike,
    *,
    passphrase: Optional[str] = None,
    passphrase_file: Optional[PathLike] = None,
) -> "Vault":
    """Opens an initialized data directory (`warden init`).

    Without a passphrase, people sign in with their passwords, which open their own key slots
    (the keys of their role, nothing more). With the master passphrase, given directly or as the
    first line of a 0600 file (a systemd credential, for example), the application holds every
    key: people are checked against their stored password hashes and get their role's keys, and
    technicians (no password, no slot) can sign in with their one-time code."""
    inner = _warden.Vault.open(
        os.fspath(data_dir),
        passphrase,
        None if passphrase_file is None else os.fspath(passphrase_file),
    )
    return Vault(inner)


class Vault:
    """An opened data directory."""

    def __init__(self, inner: _warden.Vault) -> None:
        self._inner = inner

    def sign_in(self, username: str, password: str, totp: Optional[str] = None) -> "Session":
        """Signs a person in: password, plus the one-time code when TOTP is enrolled
        (technicians: an empty password and their code, on a vault opened with the master
        passphrase). Audited as `login.cli`."""
        return Session(self._inner.sign_in(username, password, totp))


class Session:
    """A signed-in person; every call is one audited operation under their name."""

    def __init__(self, inner: _warden.Session) -> None:
        self._inner = inner

    @property
    def username(self) -> str:
        return self._inner.username

    @property
    def role(self) -> str:
        return self._inner.role

    @property
    def has_phi(self) -> bool:
        """Whether this person holds the phi key (PHI fields open for them)."""
        return self._inner.has_phi

    # Records.
    def apply_schema(self, text: str, source: str = "application") -> Json:
        return json.loads(self._inner.apply_schema(text, source))

    def set_printed_name(self, username: str, printed_name: str) -> None:
        self._inner.set_printed_name(username, printed_name)

    def put(self, collection: str, record_id: str, fields: Json) -> Json:
        """Creates the record or writes its next version (merged; None removes a field)."""
        return json.loads(self._inner.put(collection, record_id, json.dumps(fields)))

    def delete(self, collection: str, record_id: str, reason: str) -> Json:
        return json.loads(self._inner.delete(collection, record_id, reason))

    def get(self, collection: str, record_id: str, version: Optional[int] = None) -> Json:
        return json.loads(self._inner.get(collection, record_id, version))

    def history(self, collection: str, record_id: str) -> List[Json]:
        return json.loads(self._inner.history(collection, record_id))

    def list(self, collection: str) -> List[Json]:
        return json.loads(self._inner.list(collection))

    def sign(
        self,
        collection: str,
        record_id: str,
        version: int,
        meaning: str,
        *,
        password: str,
        totp: str,
    ) -> Json:
        """Signs a version ("performed", "reviewed", "approved") after re-entering both
        components; the code must be newer than any accepted before."""
        return json.loads(
            self._inner.sign(collection, record_id, version, meaning, password, totp)
        )

    # Application events.
    def event(
        self,
        action: str,
        subject: str = "",
        details: Optional[Json] = None,
        *,
        failure: bool = False,
    ) -> int:
        """Appends `app.ACTION` to the audit chain under this person; returns its seq."""
        return self._inner.event(action, subject, json.dumps(details or {}), failure)

    # Recordings.
    def record(self, path: PathLike, *, force: bool = False) -> "Recording":
        """A writer that seals as it is written; the file appears only when closed."""
        return Recording(self._inner.record(os.fspath(path), force))

    def play(self, path: PathLike) -> "Playback":
        """A reader that verifies every segment before returning it."""
        return Playback(self._inner.play(os.fspath(path)))

    # Sealed configuration.
    def seal_config(self, plaintext: bytes, path: PathLike) -> str:
        return self._inner.seal_config(plaintext, os.fspath(path))

    def open_config(self, path: PathLike) -> bytes:
        return self._inner.open_config(os.fspath(path))

    # Audit and verification.
    def audit_verify(self) -> Json:
        return json.loads(self._inner.audit_verify())

    def audit_export(self, path: PathLike, format: str = "jsonl") -> Json:
        return json.loads(self._inner.audit_export(os.fspath(path), format))

    def records_verify(self) -> Json:
        return json.loads(self._inner.records_verify())

    def records_export(
        self, path: PathLike, format: str = "jsonl", collection: Optional[str] = None
    ) -> Json:
        return json.loads(self._inner.records_export(os.fspath(path), format, collection))


class Recording:
    """A binary, write-only file object that seals what is written to it."""

    def __init__(self, inner: _warden.Recording) -> None:
        self._inner = inner
        self.result: Optional[Json] = None

    def write(self, data: Union[bytes, bytearray, memoryview]) -> int:
        return self._inner.write(bytes(data))

    def flush(self) -> None:
        """Seals what is buffered as a segment, so it survives a crash."""
        self._inner.checkpoint()

    def writable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._inner.closed

    def close(self) -> Json:
        if self.result is None:
            self.result = json.loads(self._inner.close())
        return self.result

    def abandon(self, why: str = "abandoned by the application") -> None:
        self._inner.abandon(why)

    def __enter__(self) -> "Recording":
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is None:
            self.close()
        else:
            # The exception's class only: its message may carry PHI, and the reason goes to the
            # audit chain (and the SIEM).
            self.abandon(kind.__name__)


class Playback:
    """A binary, read-only file object over a sealed recording."""

    def __init__(self, inner: _warden.Playback) -> None:
        self._inner = inner

    def read(self, size: int = -1) -> bytes:
        return self._inner.read(size)

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._inner.close()

    def __enter__(self) -> "Playback":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __iter__(self):  # chunks of 64 KiB
        while True:
            chunk = self.read(65536)
            if not chunk:
                return
            yield chunk
