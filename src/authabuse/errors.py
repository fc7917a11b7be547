"""The exceptions authabuse raises.

Every exception derives from :class:`AuthAbuseError`, and each child also derives from
the builtin it resembles, so callers may catch either::

    AuthAbuseError
    ├── ConfigurationError(ValueError)   bad option, rule file, geo table, CLI argument
    ├── InvalidEventError(ValueError)    an event built with a naive time, a bad IP, ...
    ├── ParseError(ValueError)           a malformed log line (strict mode), with source+line
    ├── CorruptDataError(ValueError)     truncated/corrupt serialized sketch, state or database
    ├── IncompatibleError(ValueError)    merging sketches of different precision or hash
    ├── GeoDataError(ValueError)         a geo database that cannot be loaded
    └── MissingExtraError(ImportError)   an optional extra is needed and not installed

>>> from authabuse.errors import ParseError
>>> err = ParseError("bad client= field", source="mail.log", lineno=7, line="...")
>>> isinstance(err, ValueError)
True
>>> str(err)
'mail.log:7: bad client= field'
"""

from __future__ import annotations

__all__ = [
    "AuthAbuseError",
    "ConfigurationError",
    "CorruptDataError",
    "GeoDataError",
    "IncompatibleError",
    "InvalidEventError",
    "MissingExtraError",
    "ParseError",
]


class AuthAbuseError(Exception):
    """Root of every exception raised by authabuse.

    >>> issubclass(ConfigurationError, AuthAbuseError)
    True
    """


class ConfigurationError(AuthAbuseError, ValueError):
    """An option, rule file, table or argument is invalid.

    >>> raise ConfigurationError("precision must be 4..18")
    Traceback (most recent call last):
    ...
    authabuse.errors.ConfigurationError: precision must be 4..18
    """


class InvalidEventError(AuthAbuseError, ValueError):
    """An event was built from invalid values (naive time, bad IP, negative count).

    >>> issubclass(InvalidEventError, ValueError)
    True
    """


class ParseError(AuthAbuseError, ValueError):
    """A log line that looks like a known format but cannot be parsed.

    Carries the ``source`` (file name or ``"<stdin>"``), the 1-based ``lineno`` and the
    offending ``line`` (already decoded, possibly truncated for display).

    >>> e = ParseError("invalid IP 'xxxx'", source="<stdin>", lineno=3, line="... [xxxx]")
    >>> (e.source, e.lineno, e.reason)
    ('<stdin>', 3, "invalid IP 'xxxx'")
    """

    def __init__(
        self, reason: str, *, source: str = "<input>", lineno: int = 0, line: str = ""
    ) -> None:
        self.reason = reason
        self.source = source
        self.lineno = lineno
        self.line = line
        super().__init__(f"{source}:{lineno}: {reason}")


class CorruptDataError(AuthAbuseError, ValueError):
    """Serialized data (sketch, state file, database) is truncated or corrupt.

    >>> issubclass(CorruptDataError, ValueError)
    True
    """


class IncompatibleError(AuthAbuseError, ValueError):
    """Two objects cannot be combined (e.g. sketches of different precision or hash).

    >>> issubclass(IncompatibleError, ValueError)
    True
    """


class GeoDataError(AuthAbuseError, ValueError):
    """A geo database or table cannot be loaded (malformed rows, wrong type, corrupt file).

    >>> issubclass(GeoDataError, AuthAbuseError)
    True
    """


class MissingExtraError(AuthAbuseError, ImportError):
    """A feature needs an optional extra that is not installed.

    The message names the extra to install, e.g. ``pip install 'authabuse[geoip2]'``.

    >>> err = MissingExtraError.for_extra("geoip2", "MMDB databases")
    >>> print(err)
    MMDB databases need the 'geoip2' extra: pip install 'authabuse[geoip2]'
    """

    @classmethod
    def for_extra(cls, extra: str, feature: str) -> MissingExtraError:
        """Build the error for ``feature`` that needs the optional ``extra``."""
        return cls(f"{feature} need the {extra!r} extra: pip install 'authabuse[{extra}]'")
