"""Our signatures against the Standard Webhooks spec's test vector and its reference
implementation (the `standardwebhooks` package), and the receiver-side `verify`."""

import base64
import json
import secrets
import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from webhook_signing import SECRET_PREFIX, headers, new_secret, sign, verify

# The spec's published example.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

NOW = 1_700_000_000


def test_the_spec_test_vector():
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    assert headers(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": "1614265330",
        "webhook-signature": SPEC_SIGNATURE,
    }
    assert verify(
        SPEC_SECRET,
        {
            "webhook-signature": SPEC_SIGNATURE,
            "webhook-id": SPEC_ID,
            "webhook-timestamp": "1614265330",
        },
        SPEC_BODY,
        now=SPEC_TIMESTAMP + 10,
    )


def test_the_prefix_is_optional_in_the_secret():
    bare = SPEC_SECRET.removeprefix(SECRET_PREFIX)
    assert sign(bare, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


@pytest.mark.parametrize("secret", ["whsec_", "whsec_not base64!", "whsec_abc"])
def test_a_malformed_secret_is_refused(secret):
    with pytest.raises(ValueError, match="secret"):
        sign(secret, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)


@pytest.mark.parametrize("seed", range(5))
def test_the_reference_implementation_accepts_our_headers(seed):
    secret = new_secret()
    # The reference decodes the body as UTF-8 text, so the bodies are JSON (as ours are).
    payload = {
        "type": "order.created",
        "seed": seed,
        "data": {"note": secrets.token_urlsafe(8 + 50 * seed), "name": "Zoë ✓"},
    }
    body = json.dumps(payload, ensure_ascii=False).encode()
    sent = headers(secret, f"msg_{secrets.token_hex(8)}", int(time.time()), body)
    assert Webhook(secret).verify(body, sent) == payload
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, sent)


def test_new_secret_shape():
    made = {new_secret() for _ in range(20)}
    assert len(made) == 20
    for secret in made:
        assert secret.startswith(SECRET_PREFIX)
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        assert len(key) >= 24


def signed(secret: str = SPEC_SECRET, body: bytes = SPEC_BODY, at: int = NOW) -> dict[str, str]:
    return headers(secret, SPEC_ID, at, body)


def test_verify_accepts_a_genuine_delivery_with_any_header_case():
    sent = {name.title(): value for name, value in signed().items()}
    assert verify(SPEC_SECRET, sent, SPEC_BODY, now=NOW)


def test_verify_rejects_a_tampered_body():
    assert not verify(SPEC_SECRET, signed(), SPEC_BODY + b" ", now=NOW)
    assert not verify(SPEC_SECRET, signed(), b'{"test": 2432232315}', now=NOW)


def test_verify_rejects_a_tampered_id_or_timestamp():
    assert not verify(SPEC_SECRET, {**signed(), "webhook-id": "msg_other"}, SPEC_BODY, now=NOW)
    moved = {**signed(), "webhook-timestamp": str(NOW + 1)}
    assert not verify(SPEC_SECRET, moved, SPEC_BODY, now=NOW)


def test_verify_rejects_a_wrong_secret():
    assert not verify(new_secret(), signed(), SPEC_BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86_400])
def test_verify_rejects_a_timestamp_out_of_tolerance(offset):
    assert not verify(SPEC_SECRET, signed(at=NOW + offset), SPEC_BODY, now=NOW)


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_verify_accepts_a_timestamp_within_tolerance(offset):
    assert verify(SPEC_SECRET, signed(at=NOW + offset), SPEC_BODY, now=NOW)


def test_verify_tolerance_is_configurable_and_defaults_to_the_clock():
    assert not verify(SPEC_SECRET, signed(at=NOW - 60), SPEC_BODY, now=NOW, tolerance_seconds=30)
    assert verify(SPEC_SECRET, signed(at=int(time.time())), SPEC_BODY)
    assert not verify(SPEC_SECRET, signed(at=NOW), SPEC_BODY)  # NOW is long gone


def test_verify_accepts_one_of_several_signatures():
    """Rotation: the sender signs with the old and the new secret until receivers switch."""
    old, new = new_secret(), new_secret()
    both = " ".join(sign(s, SPEC_ID, NOW, SPEC_BODY) for s in (old, new))
    sent = {**signed(), "webhook-signature": f"v1a,bm90IGVkMjU1MTk= {both}"}
    assert verify(old, sent, SPEC_BODY, now=NOW)
    assert verify(new, sent, SPEC_BODY, now=NOW)
    assert not verify(new_secret(), sent, SPEC_BODY, now=NOW)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": ""},
        {"webhook-timestamp": "soon"},
        {"webhook-timestamp": "-1700000000"},
        {"webhook-timestamp": "1700000000.5"},
        {"webhook-timestamp": "1²"},
        {"webhook-signature": ""},
        {"webhook-signature": "v1"},
        {"webhook-signature": "v1,@@not-base64@@"},
        {"webhook-signature": "v2," + signed()["webhook-signature"].removeprefix("v1,")},
    ],
)
def test_verify_rejects_malformed_headers(change):
    assert not verify(SPEC_SECRET, {**signed(), **change}, SPEC_BODY, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_rejects_a_missing_header(missing):
    sent = signed()
    del sent[missing]
    assert not verify(SPEC_SECRET, sent, SPEC_BODY, now=NOW)
