"""Standard Webhooks signatures (https://www.standardwebhooks.com): the sender's `sign` and
`headers`, and the receiver's `verify`, which the tests and the docs use.

A signature is HMAC-SHA256 over "<id>.<timestamp>.<body>" keyed with the secret's decoded
bytes, sent as "v1,<base64>". Several may travel space-separated in one header, so a receiver
keeps accepting the old secret while a new one is rolled out.
"""

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 bytes
DEFAULT_TOLERANCE_SECONDS = 300  # the spec's five minutes, either side of now


def new_secret() -> str:
    """A fresh signing secret: the prefix, then standard base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    """The HMAC key a secret stands for; the prefix is optional, as in the spec."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise ValueError("a webhook secret is standard base64 after 'whsec_'") from error
    if not key:
        raise ValueError("a webhook secret may not be empty")
    return key


def _digest(key: bytes, message_id: str, timestamp: int | str, body: bytes) -> bytes:
    signed = f"{message_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The "v1,<base64>" signature of `body` sent as message `message_id` at `timestamp`."""
    digest = _digest(_key(secret), message_id, timestamp, body)
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers a delivery carries; `body` must be sent byte for byte as signed."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, message_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: int | None = None,
) -> bool:
    """Whether a delivery is genuine and fresh: one of its v1 signatures matches `secret`
    and its timestamp is within `tolerance_seconds` of `now` (default: the clock), which
    bounds how long a captured request can be replayed. Malformed headers give False."""
    lowered = {name.lower(): value for name, value in headers.items()}
    message_id = lowered.get("webhook-id", "")
    timestamp = lowered.get("webhook-timestamp", "")
    signatures = lowered.get("webhook-signature", "")
    # isdigit alone would take "²" and other non-ASCII digits, which int() then rejects.
    if not (message_id and timestamp.isascii() and timestamp.isdigit() and signatures):
        return False
    if abs((int(time.time()) if now is None else now) - int(timestamp)) > tolerance_seconds:
        return False
    # The header's text is what the sender signed, so that (not int(timestamp)) is checked.
    expected = _digest(_key(secret), message_id, timestamp, body)
    for candidate in signatures.split(" "):
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue  # another scheme (v1a is ed25519) or garbage: not ours to judge
        try:
            given = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            continue
        if hmac.compare_digest(expected, given):
            return True
    return False
