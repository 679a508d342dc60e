"""warden's exceptions: one class per cause, each also a familiar built-in where one fits."""


class WardenError(Exception):
    """Anything warden refused or could not do."""


class AuthenticationError(WardenError):
    """Sign-in or re-authentication failed (wrong name, password or code; locked; throttled)."""


class WrongPassphrase(AuthenticationError):
    """The master passphrase does not open this data directory."""


class AccessDenied(WardenError, PermissionError):
    """The signed-in role does not allow this (the refusal is in the audit trail)."""


class NotFound(WardenError, LookupError):
    """No such collection, record or version, or a state that forbids the act."""


class InvalidInput(WardenError, ValueError):
    """The input is malformed (field types, ids, schema, JSON)."""


class IntegrityError(WardenError):
    """Stored or sealed data was changed or is damaged."""


class StorageError(WardenError, OSError):
    """The database, a file or the system failed."""
