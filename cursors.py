"""Opaque page cursors: the position after which the next page starts, signed with the app's
key and bound to the list that gave it (who asked, with which filters), so a client can
neither forge one nor carry it to another list."""

import base64
import binascii
import hashlib
import hmac

MAX_LENGTH = 200


class InvalidCursor(ValueError):
    """Forged, damaged, or made for another list."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, scope: str, payload: bytes) -> bytes:
    message = b"page-cursor|" + scope.encode() + b"|" + payload
    return hmac.new(secret.encode(), message, hashlib.sha256).digest()[:16]


def make(secret: str, scope: str, after: int) -> str:
    """A cursor for the page after the row whose key is `after`, of the list `scope` names."""
    payload = str(after).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, scope, payload))}"


def read(secret: str, scope: str, cursor: str) -> int:
    """The key a cursor continues after; InvalidCursor unless this app made it for `scope`."""
    encoded, _, signature = cursor.partition(".")
    try:
        payload, given = _unb64(encoded), _unb64(signature)
    except (binascii.Error, ValueError):
        raise InvalidCursor("malformed cursor") from None
    if not hmac.compare_digest(given, _mac(secret, scope, payload)):
        raise InvalidCursor("this cursor was not made for this list")
    return int(payload)
