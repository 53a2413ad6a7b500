"""How cached values become bytes: safe by default, pickle only when signed and asked for.

Every serializer writes a **one-byte format tag** before the payload and checks it on the
way back, so a value written by another serializer (or by something that is not this
library) is detected instead of being misread:

=====  =====================  =============================================
tag    serializer             payload
=====  =====================  =============================================
``J``  :class:`JsonSerializer`        compact UTF-8 JSON (stdlib ``json``)
``M``  :class:`MsgpackSerializer`     msgpack (optional package ``msgpack``)
``S``  :class:`SignedPickleSerializer`  32-byte HMAC-SHA256, then the pickle
``B``  any serializer                 a top-level ``bytes`` value, stored verbatim
=====  =====================  =============================================

A new incompatible encoding gets a new tag (the tag is the version). Reading a value with
the wrong tag raises :class:`~infra.exceptions.CacheSerializationError` naming both
formats; a caller that prefers to treat it as a miss catches that error (a cache can
always be refilled), the adapter itself never guesses.

Decisions:

* **JSON is the default** because it is safe to load from a shared server (loading never
  runs code) and readable with ``redis-cli``. ``orjson`` is not a dependency; stdlib
  ``json`` with compact separators is used. JSON's own limits apply and are documented:
  tuples come back as lists, non-string dict keys come back as strings, and NaN/infinity
  are refused (``allow_nan=False``) because other JSON readers reject them.
* **Top-level ``bytes`` are stored raw** under tag ``B`` by every serializer (a blob such
  as a packed embedding needs no encoding); ``bytes`` nested inside a JSON value are an
  error, as JSON has no bytes type.
* **A value that cannot be encoded** raises ``CacheSerializationError`` naming the
  offending type (never the value: it may be a secret), before anything is sent.
* **Pickle is opt-in and signed**: :class:`SignedPickleSerializer` appends nothing it does
  not verify. The HMAC-SHA256 of tag and pickle is checked with
  :func:`hmac.compare_digest` *before* :func:`pickle.loads`, so data written by anyone
  without the key is rejected and never unpickled. Old keys can be kept for reading
  during a key rotation.
* **msgpack is optional**: it is not a dependency of this library, so
  :class:`MsgpackSerializer` imports it when constructed and raises
  :class:`~infra.exceptions.ConfigurationError` naming the package when it is missing.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import pickle
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Final, Protocol, runtime_checkable

from infra.exceptions import CacheSerializationError, ConfigurationError

__all__ = [
    "RAW_BYTES_TAG",
    "JsonSerializer",
    "MsgpackSerializer",
    "Serializer",
    "SignedPickleSerializer",
]

#: Tag of a top-level ``bytes`` value stored verbatim (readable by every serializer).
RAW_BYTES_TAG: Final = b"B"
_FORMATS: Final = {b"J": "json", b"M": "msgpack", b"S": "signed-pickle", b"B": "bytes"}
_DIGEST_SIZE: Final = hashlib.sha256().digest_size
_MIN_KEY_BYTES: Final = 16


@runtime_checkable
class Serializer(Protocol):
    """Turns values into tagged bytes and back; see the module docstring."""

    #: Short name used in errors and logs (``"json"``).
    name: str

    def dumps(self, value: Any) -> bytes:
        """Encode ``value``; raises ``CacheSerializationError`` naming an unsupported type."""
        ...

    def loads(self, data: bytes) -> Any:
        """Decode bytes written by :meth:`dumps`; raises ``CacheSerializationError``."""
        ...


class _UnsupportedTypeError(TypeError):
    """Raised from an encoder's ``default`` hook; carries the offending type."""

    def __init__(self, obj: object) -> None:
        self.type_name = _type_name(obj)
        super().__init__(f"unsupported type {self.type_name}")


def _type_name(obj: object) -> str:
    cls = type(obj)
    return (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )


def _refuse(obj: object) -> Any:
    raise _UnsupportedTypeError(obj)


class _Framed(ABC):
    """Tag handling shared by the serializers; subclasses supply ``_encode``/``_decode``."""

    __slots__ = ()
    name: str = "framed"
    _tag: bytes = b"?"
    _hint: str = ""

    def dumps(self, value: Any) -> bytes:
        if value.__class__ is bytes:
            return RAW_BYTES_TAG + value
        try:
            return self._tag + self._encode(value)
        except CacheSerializationError:
            raise
        # Each library signals "cannot encode" with one of these; all become one error.
        except (TypeError, ValueError, OverflowError, RecursionError, AttributeError) as exc:
            inner = exc.type_name if isinstance(exc, _UnsupportedTypeError) else None
            raise self._unencodable(value, inner, exc) from exc
        except pickle.PicklingError as exc:
            raise self._unencodable(value, None, exc) from exc

    def loads(self, data: bytes) -> Any:
        tag = data[:1]
        if tag == self._tag:
            try:
                return self._decode(data[1:])
            except CacheSerializationError:
                raise
            # Corrupt payloads surface as any of these, depending on the library.
            except Exception as exc:
                raise CacheSerializationError(
                    f"{self.name} could not decode a cached value: {type(exc).__name__}",
                    component="cache",
                    details={"serializer": self.name},
                ) from exc
        if tag == RAW_BYTES_TAG:
            return data[1:]
        found = _FORMATS.get(tag, "unknown")
        raise CacheSerializationError(
            f"cached value is in format {found!r} (tag {tag!r}), not {self.name!r}: it was "
            "written by another serializer or program; use the same serializer everywhere "
            "or delete the key",
            component="cache",
            details={"serializer": self.name, "found_format": found},
        )

    def _unencodable(
        self, value: object, inner: str | None, exc: BaseException
    ) -> CacheSerializationError:
        outer = _type_name(value)
        where = outer if inner is None or inner == outer else f"{inner} (inside a {outer})"
        why = "" if inner is not None else f" ({type(exc).__name__}: {exc})"
        return CacheSerializationError(
            f"{self.name} cannot encode a value of type {where}{why}. {self._hint}",
            component="cache",
            details={"serializer": self.name, "type": inner or outer, "value_type": outer},
        )

    @abstractmethod
    def _encode(self, value: Any) -> bytes:
        """The payload for ``value`` (without the format tag)."""

    @abstractmethod
    def _decode(self, payload: bytes) -> Any:
        """The value of a payload (without the format tag)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


_JSON_ENCODER: Final = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_refuse
)
_JSON_DECODER: Final = json.JSONDecoder()


class JsonSerializer(_Framed):
    """Compact UTF-8 JSON (the default). Stores dict (str keys), list, str, int, float,
    bool and None; tuples read back as lists; top-level ``bytes`` are stored raw."""

    __slots__ = ()
    name = "json"
    _tag = b"J"
    _hint = (
        "Store JSON types (dict with str keys, list, str, int, float, bool, None) or "
        "top-level bytes, convert the value first, or choose another serializer."
    )

    def _encode(self, value: Any) -> bytes:
        return _JSON_ENCODER.encode(value).encode()

    def _decode(self, payload: bytes) -> Any:
        return _JSON_DECODER.decode(payload.decode())

    def loads(self, data: bytes) -> Any:
        # Fast path for the common case (a cache hit on our own format): one compare,
        # no extra frames; anything else takes the general path.
        if data[:1] == b"J":
            try:
                return _JSON_DECODER.decode(data[1:].decode())
            except (ValueError, RecursionError):
                pass  # reported with the serializer's wording below
        return super().loads(data)


class MsgpackSerializer(_Framed):
    """msgpack (binary, compact; also keeps bytes nested in values and int map keys).

    Raises:
        ConfigurationError: The optional ``msgpack`` package is not installed.
    """

    __slots__ = ("_msgpack",)
    name = "msgpack"
    _tag = b"M"
    _hint = "msgpack stores dict, list, str, bytes, int, float, bool and None."

    def __init__(self) -> None:
        try:
            self._msgpack: Any = importlib.import_module("msgpack")
        except ImportError as exc:
            raise ConfigurationError(
                "MsgpackSerializer needs the 'msgpack' package, which is not installed: "
                "`pip install msgpack`, or use JsonSerializer",
                component="cache",
                details={"package": "msgpack"},
            ) from exc

    def _encode(self, value: Any) -> bytes:
        data: bytes = self._msgpack.packb(value, use_bin_type=True, default=_refuse)
        return data

    def _decode(self, payload: bytes) -> Any:
        return self._msgpack.unpackb(payload, raw=False, strict_map_key=False)


class SignedPickleSerializer(_Framed):
    """Pickle with an HMAC-SHA256 signature, for values JSON cannot hold. Opt-in only.

    Only processes holding ``secret_key`` can write values this serializer will load;
    anything else fails verification and is never unpickled. Anyone with the key *can*
    make every reader run code, so guard it like a password.

    Args:
        secret_key: At least 16 bytes (a ``str`` is UTF-8 encoded); 32 random bytes
            recommended (``secrets.token_bytes(32)``).
        previous_keys: Keys still accepted when reading (rotation); writing always signs
            with ``secret_key``.
        protocol: Pickle protocol (default: the highest).
    """

    __slots__ = ("_keys", "_protocol")
    name = "signed-pickle"
    _tag = b"S"
    _hint = "Only picklable values can be stored."

    def __init__(
        self,
        secret_key: bytes | str,
        *,
        previous_keys: Sequence[bytes | str] = (),
        protocol: int = pickle.HIGHEST_PROTOCOL,
    ) -> None:
        if isinstance(previous_keys, bytes | str):
            raise TypeError("previous_keys must be a sequence of keys, e.g. [old_key]")
        self._keys = tuple(_check_key(k, "secret_key") for k in (secret_key, *previous_keys))
        if not 0 <= protocol <= pickle.HIGHEST_PROTOCOL:
            raise ValueError(f"protocol must be 0..{pickle.HIGHEST_PROTOCOL}, got {protocol!r}")
        self._protocol = protocol

    def _sign(self, key: bytes, body: bytes) -> bytes:
        return hmac.new(key, self._tag + body, hashlib.sha256).digest()

    def _encode(self, value: Any) -> bytes:
        body = pickle.dumps(value, protocol=self._protocol)
        return self._sign(self._keys[0], body) + body

    def _decode(self, payload: bytes) -> Any:
        mac, body = payload[:_DIGEST_SIZE], payload[_DIGEST_SIZE:]
        if len(mac) == _DIGEST_SIZE and any(
            hmac.compare_digest(mac, self._sign(key, body)) for key in self._keys
        ):
            return pickle.loads(body)  # noqa: S301 - the HMAC was verified just above
        raise CacheSerializationError(
            "signed-pickle value failed signature verification and was not unpickled: it "
            "was written with another key, or tampered with",
            component="cache",
            details={"serializer": self.name},
        )

    def __repr__(self) -> str:
        return f"SignedPickleSerializer(secret_key=***, keys={len(self._keys)})"


def _check_key(key: bytes | str, arg: str) -> bytes:
    raw = key.encode() if isinstance(key, str) else key
    if not isinstance(raw, bytes):
        raise TypeError(f"{arg} must be bytes or str, got {type(key).__name__}")
    if len(raw) < _MIN_KEY_BYTES:
        raise ValueError(
            f"{arg} must be at least {_MIN_KEY_BYTES} bytes; use secrets.token_bytes(32)"
        )
    return raw
