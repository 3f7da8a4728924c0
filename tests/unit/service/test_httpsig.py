"""RFC 9421 request signatures: the pcii profile is signed, verified, and nothing else passes.

Signatures outside our profile are made by hand (`hand_signed` writes the signature base
itself and signs it with PyNaCl), so each refusal is tested on a signature that verifies.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from http_message_signatures import (
    ContentDigest,
    HTTPMessageSigner,
    HTTPMessageVerifier,
    MappingKeyResolver,
    algorithms,
)

from pcii_vault.crypto.signing import Ed25519PrivateKey, Ed25519PublicKey
from pcii_vault.errors import BackendError, InputError, NotFoundError
from pcii_vault.service.httpsig import (
    DigestCheck,
    NonceCache,
    RequestSigner,
    SignatureRefused,
    VerifiedSignature,
    content_digest,
    verify_request,
)

KEY = Ed25519PrivateKey(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey(bytes(range(1, 33)))
KEY_ID = "alice@example-vault"
URL = "https://127.0.0.1:8443/v1/objects/abc?version=2"
BODY = b'{"purpose": "review"}'
DIGEST = content_digest(BODY)
NOW = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
NONCE = "q0Zy3r6BBm1Ju8xRwQJ0tw"
COMPONENTS = ("@method", "@target-uri", "content-digest")
PARAMS = f'created={int(NOW.timestamp())};keyid="{KEY_ID}";alg="ed25519";nonce="{NONCE}"'


def keys(key_id: str) -> Ed25519PublicKey:
    if key_id != KEY_ID:
        raise KeyError(key_id)
    return KEY.public_key


def signed(
    method: str = "POST", url: str = URL, *, now: datetime = NOW, nonce: str = NONCE
) -> dict[str, str]:
    return RequestSigner(KEY_ID, KEY).headers(method, url, body_digest=DIGEST, now=now, nonce=nonce)


def verify(
    headers: dict[str, str],
    method: str = "POST",
    url: str = URL,
    *,
    now: datetime = NOW,
    seen: NonceCache | None = None,
) -> VerifiedSignature:
    return verify_request(method, url, headers, resolve_key=keys, now=now, seen=seen)


def hand_signed(
    *,
    components: tuple[str, ...] = COMPONENTS,
    params: str = PARAMS,
    label: str = "pcii",
    method: str = "POST",
    url: str = URL,
    digest: str = DIGEST,
    key: Ed25519PrivateKey = KEY,
) -> dict[str, str]:
    """RFC 9421 section 2.5, written out: one line per component, then @signature-params."""
    values = {"@method": method, "@target-uri": url, "@authority": "127.0.0.1:8443"}
    values["content-digest"] = digest
    inner = "(" + " ".join(f'"{name}"' for name in components) + ")" + (";" if params else "")
    signature_params = inner + params
    lines = [f'"{name}": {values[name]}' for name in components]
    base = "\n".join([*lines, f'"@signature-params": {signature_params}'])
    signature = base64.b64encode(key.sign(base.encode())).decode()
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{label}={signature_params}",
        "Signature": f"{label}=:{signature}:",
    }


def refused(
    headers: dict[str, str], match: str, *, exit_code: int = 2, **kwargs: object
) -> SignatureRefused:
    """Refused with 401 in one line; exit 2 when malformed, 4 when forged, stale or replayed."""
    with pytest.raises(SignatureRefused, match=match) as caught:
        verify(headers, **kwargs)
    error = caught.value
    assert error.status == 401
    assert isinstance(error, InputError)
    assert error.exit_code == exit_code
    assert "\n" not in str(error)
    return error


# --- digests ---------------------------------------------------------------------------


def test_content_digest_is_rfc9530_sha256_and_agrees_with_the_package() -> None:
    expected = base64.b64encode(hashlib.sha256(BODY).digest()).decode()
    assert content_digest(BODY) == f"sha-256=:{expected}:"
    assert content_digest(BODY) == ContentDigest.create(BODY)
    # RFC 9530 appendix: the digest of the empty body.
    assert content_digest(b"") == "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"


def test_digest_check_streams_and_compares() -> None:
    check = DigestCheck()
    for start in range(0, len(BODY), 5):
        check.update(BODY[start : start + 5])
    assert check.value() == DIGEST
    assert check.matches(DIGEST)
    assert check.matches(f" {DIGEST}\t")  # header whitespace is not part of the value
    assert not check.matches(content_digest(BODY + b" "))
    check.update(b"more")
    assert not check.matches(DIGEST)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        DIGEST.replace("sha-256", "sha-512"),
        DIGEST.replace("sha-256", "SHA-256"),
        DIGEST + ", " + DIGEST,
        DIGEST + ";p=1",
        DIGEST[:-1],
        DIGEST.replace("=:", ":"),
        "sha-256=:" + base64.b64encode(hashlib.sha256(BODY).digest()[:31]).decode() + ":",
        "sha-512=:" + base64.b64encode(hashlib.sha512(BODY).digest()).decode() + ":",
    ],
)
def test_digest_check_accepts_only_one_canonical_sha256(value: str) -> None:
    check = DigestCheck()
    check.update(BODY)
    assert not check.matches(value)


def test_digest_check_refuses_non_canonical_base64() -> None:
    # A digest whose base64 ends in a character with its unused low bits set decodes to
    # the same bytes: only the canonical spelling matches.
    body = next(b for b in (bytes([i]) for i in range(256)) if content_digest(b)[-3] == "A")
    check = DigestCheck()
    check.update(body)
    value = content_digest(body)
    assert check.matches(value)
    assert not check.matches(value[:-3] + "B" + value[-2:])


# --- signing and the round trip --------------------------------------------------------


def test_signed_headers_are_exactly_the_profile() -> None:
    headers = signed()
    assert headers == hand_signed()  # Ed25519 is deterministic: the same base, byte for byte
    assert set(headers) == {"Content-Digest", "Signature-Input", "Signature"}
    assert headers["Signature-Input"] == f'pcii=("@method" "@target-uri" "content-digest");{PARAMS}'


def test_round_trip() -> None:
    verified = verify(signed(), seen=NonceCache(timedelta(seconds=60), since=NOW))
    assert verified == VerifiedSignature(
        key_id=KEY_ID, created=NOW, nonce=NONCE, content_digest=DIGEST
    )
    check = DigestCheck()
    check.update(BODY)
    assert check.matches(verified.content_digest)


def test_default_nonce_is_128_random_bits_base64url_and_default_created_is_now() -> None:
    signer = RequestSigner(KEY_ID, KEY)
    before = datetime.now(UTC).replace(microsecond=0)
    first = signer.headers("GET", URL, body_digest=content_digest(b""))
    second = signer.headers("GET", URL, body_digest=content_digest(b""))
    after = datetime.now(UTC)
    one = verify_request("GET", URL, first, resolve_key=keys, now=after)
    two = verify_request("GET", URL, second, resolve_key=keys, now=after)
    assert one.nonce != two.nonce
    assert len(base64.urlsafe_b64decode(one.nonce + "==")) == 16
    assert before <= one.created <= after


def test_the_package_verifies_our_signature_with_its_own_ed25519() -> None:
    # Interoperability: the package's ED25519 over `cryptography` keys accepts what our
    # Ed25519 (PyNaCl) signs, and we accept what it signs.
    public = ed25519.Ed25519PublicKey.from_public_bytes(KEY.public_key.raw)
    private = ed25519.Ed25519PrivateKey.from_private_bytes(KEY.seed)
    now = datetime.now(UTC)

    class Request:
        def __init__(self, headers: dict[str, str]) -> None:
            self.method, self.url, self.headers = "PUT", URL, headers

    ours = Request(signed("PUT", now=now))
    verifier = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={KEY_ID: public}, private_keys={}),
    )
    (result,) = verifier.verify(ours, require_components=COMPONENTS)
    assert result.parameters["keyid"] == KEY_ID

    theirs = Request({"Content-Digest": DIGEST})
    HTTPMessageSigner(
        signature_algorithm=algorithms.ED25519,
        key_resolver=MappingKeyResolver(public_keys={}, private_keys={KEY_ID: private}),
    ).sign(
        theirs,
        key_id=KEY_ID,
        created=now,
        nonce=NONCE,
        label="pcii",
        covered_component_ids=COMPONENTS,
        use_existing_digest=True,
    )
    assert verify(theirs.headers, "PUT", now=now).key_id == KEY_ID


def test_resolve_key_may_return_raw_bytes() -> None:
    verified = verify_request(
        "POST", URL, signed(), resolve_key=lambda _: KEY.public_key.raw, now=NOW
    )
    assert verified.key_id == KEY_ID


def test_header_names_are_case_insensitive() -> None:
    headers = {name.lower(): value for name, value in signed().items()}
    assert verify(headers).nonce == NONCE


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"body_digest": "sha-512=:abc:"}, "sha-256"),
        ({"body_digest": DIGEST, "nonce": "short"}, "nonce"),
        ({"body_digest": DIGEST, "nonce": "not base64url!!!!!!!"}, "nonce"),
        ({"body_digest": DIGEST, "now": datetime(2025, 3, 1, 12)}, "time zone"),
    ],
)
def test_signer_refuses_bad_arguments(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RequestSigner(KEY_ID, KEY).headers("POST", URL, **kwargs)


@pytest.mark.parametrize(("method", "url"), [("post", URL), ("POST", "/v1/objects"), ("POST", "")])
def test_signer_refuses_a_lowercase_method_or_a_relative_url(method: str, url: str) -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        RequestSigner(KEY_ID, KEY).headers(method, url, body_digest=DIGEST)


# --- every refusal ---------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["Signature", "Signature-Input"])
def test_missing_signature_headers_are_refused(missing: str) -> None:
    headers = signed()
    del headers[missing]
    refused(headers, f"no {missing} header")


def test_missing_content_digest_header_is_refused() -> None:
    headers = signed()
    del headers["Content-Digest"]
    refused(headers, "content-digest")


@pytest.mark.parametrize(
    "components",
    [
        ("@method", "@target-uri"),
        ("@method", "content-digest"),
        ("@target-uri", "content-digest"),
        (),
    ],
)
def test_a_missing_component_is_refused(components: tuple[str, ...]) -> None:
    missing = next(name for name in COMPONENTS if name not in components)
    refused(hand_signed(components=components), f"does not cover {missing}")


def test_an_extra_component_is_refused() -> None:
    refused(hand_signed(components=(*COMPONENTS, "@authority")), "other than")


def test_components_in_another_order_verify() -> None:
    reordered = ("content-digest", "@method", "@target-uri")
    assert verify(hand_signed(components=reordered)).key_id == KEY_ID


@pytest.mark.parametrize("name", ["created", "keyid", "nonce"])
def test_a_missing_parameter_is_refused(name: str) -> None:
    params = ";".join(p for p in PARAMS.split(";") if not p.startswith(f"{name}="))
    refused(hand_signed(params=params), f"no {name} parameter")


@pytest.mark.parametrize(
    "alg", ["", ';alg="hmac-sha256"', ';alg="rsa-pss-sha512"', ';alg="ED25519"']
)
def test_an_algorithm_other_than_ed25519_is_refused(alg: str) -> None:
    params = ";".join(p for p in PARAMS.split(";") if not p.startswith("alg=")) + alg
    refused(hand_signed(params=params), "algorithm")


@pytest.mark.parametrize("extra", [';tag="x"', ";expires=9999999999"])
def test_an_extra_parameter_is_refused(extra: str) -> None:
    refused(hand_signed(params=PARAMS + extra), "parameters other than")


@pytest.mark.parametrize("nonce", ["short", "has space in it, twenty", "x" * 129])
def test_a_malformed_nonce_is_refused(nonce: str) -> None:
    refused(hand_signed(params=PARAMS.replace(NONCE, nonce)), "nonce")


def test_another_label_is_refused() -> None:
    # The label is not signed: a signature that verifies under another label is refused.
    refused(hand_signed(label="other"), "labelled pcii")
    relabelled = {k: v.replace("pcii=", "sig1=", 1) for k, v in signed().items()}
    refused(relabelled, "labelled pcii")


def test_two_signatures_are_refused() -> None:
    ours, other = signed(), hand_signed(label="sig2", key=OTHER_KEY)
    headers = {
        "Content-Digest": DIGEST,
        "Signature-Input": f"{ours['Signature-Input']}, {other['Signature-Input']}",
        "Signature": f"{ours['Signature']}, {other['Signature']}",
    }
    refused(headers, "Multiple signatures")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PUT", URL),
        ("POST", URL.replace("abc", "abd")),
        ("POST", URL.replace("version=2", "version=3")),
        ("POST", URL.replace("?version=2", "")),
        ("POST", URL.replace("8443", "8444")),
        ("POST", URL.replace("https", "http")),
        ("POST", "https://localhost:8443/v1/objects/abc?version=2"),
        ("POST", "https://127.0.0.1:8443/v1/objects/%61bc?version=2"),
    ],
)
def test_another_method_or_url_is_refused(method: str, url: str) -> None:
    refused(signed(), "does not verify", exit_code=4, method=method, url=url)


def test_the_url_is_compared_as_sent() -> None:
    # The default port is not dropped: the server must reconstruct the URL as it was sent.
    headers = signed(url="https://vault.example:443/v1/x")
    assert verify(headers, url="https://vault.example:443/v1/x").key_id == KEY_ID
    refused(headers, "does not verify", exit_code=4, url="https://vault.example/v1/x")


@pytest.mark.parametrize(
    "sent",
    [
        "https://127.0.0.1:8443/v1/x?y=1",
        "https://Vault.Example:443/v1/x",
        "https://vault.example/a b?q=\u00e9",
        "https://[::1]:8443",
    ],
)
def test_an_httpx_request_verifies_against_the_url_a_server_rebuilds(sent: str) -> None:
    # The client signs str(request.url); the server rebuilds scheme://Host + raw path.
    request = httpx.Request("POST", sent, content=BODY)
    headers = RequestSigner(KEY_ID, KEY).headers(
        "POST", str(request.url), body_digest=DIGEST, now=NOW, nonce=NONCE
    )
    rebuilt = f"https://{request.headers['host']}{request.url.raw_path.decode('ascii')}"
    assert verify(headers, url=rebuilt).key_id == KEY_ID


def test_a_tampered_digest_is_refused() -> None:
    headers = signed()
    headers["Content-Digest"] = content_digest(BODY + b"!")
    refused(headers, "does not verify", exit_code=4)


def test_a_signed_digest_other_than_sha256_is_refused() -> None:
    sha512 = "sha-512=:" + base64.b64encode(hashlib.sha512(BODY).digest()).decode() + ":"
    refused(hand_signed(digest=sha512), "sha-256")
    refused(hand_signed(digest=f"{DIGEST}, {sha512}"), "sha-256")


def test_a_tampered_signature_is_refused() -> None:
    headers = signed()
    raw = bytearray(base64.b64decode(headers["Signature"][len("pcii=:") : -1]))
    raw[0] ^= 1
    headers["Signature"] = f"pcii=:{base64.b64encode(bytes(raw)).decode()}:"
    refused(headers, "does not verify", exit_code=4)


def test_another_key_is_refused() -> None:
    refused(hand_signed(key=OTHER_KEY), "does not verify", exit_code=4)
    with pytest.raises(SignatureRefused, match="does not verify"):
        verify_request("POST", URL, signed(), resolve_key=lambda _: OTHER_KEY.public_key, now=NOW)


@pytest.mark.parametrize(
    "header",
    [
        "pcii=garbage",
        "pcii=(",
        'pcii=("@method" "@target-uri" "content-digest");created="soon"',
        "pcii=:AAAA:",
    ],
)
def test_malformed_signature_input_is_refused(header: str) -> None:
    headers = signed()
    headers["Signature-Input"] = header
    refused(headers, "signature refused: .*(Signature-Input|created)")


def test_a_signature_that_is_not_a_byte_sequence_is_refused() -> None:
    headers = signed()
    headers["Signature"] = 'pcii="not bytes"'
    refused(headers, "Byte Sequence")


@pytest.mark.parametrize("error", [KeyError("alice"), NotFoundError("no such principal")])
def test_an_unknown_key_is_refused(error: Exception) -> None:
    def unknown(_: str) -> Ed25519PublicKey:
        raise error

    with pytest.raises(SignatureRefused, match="is not a registered principal") as caught:
        verify_request("POST", URL, signed(), resolve_key=unknown, now=NOW)
    assert caught.value.status == 401
    assert caught.value.exit_code == 3  # as embedded mode: not a registered principal


def test_a_failing_key_store_is_not_a_refusal() -> None:
    def down(_: str) -> Ed25519PublicKey:
        raise BackendError("principal store unavailable")

    with pytest.raises(BackendError, match="unavailable"):
        verify_request("POST", URL, signed(), resolve_key=down, now=NOW)


def test_created_within_the_window_either_way_is_accepted() -> None:
    window = timedelta(seconds=60)
    assert verify(signed(), now=NOW + window).created == NOW
    assert verify(signed(), now=NOW - window).created == NOW


def test_a_stale_signature_is_refused() -> None:
    refused(signed(), "stale", exit_code=4, now=NOW + timedelta(seconds=61))
    refused(signed(), "stale", exit_code=4, now=NOW + timedelta(days=1))


def test_a_signature_from_the_future_is_refused() -> None:
    refused(signed(), "future", exit_code=4, now=NOW - timedelta(seconds=61))


def test_the_window_is_the_callers() -> None:
    headers = signed()
    later = NOW + timedelta(minutes=5)
    with pytest.raises(SignatureRefused, match="stale"):
        verify_request("POST", URL, headers, resolve_key=keys, now=later)
    wide = verify_request(
        "POST", URL, headers, resolve_key=keys, now=later, window=timedelta(minutes=10)
    )
    assert wide.created == NOW


def test_a_replayed_nonce_is_refused() -> None:
    seen = NonceCache(timedelta(seconds=60), since=NOW)
    headers = signed()
    verify(headers, seen=seen)
    refused(headers, "replayed", exit_code=4, seen=seen, now=NOW + timedelta(seconds=30))
    # Even re-signed at another time: the nonce, not the signature, is what is remembered.
    refused(signed(now=NOW + timedelta(seconds=1)), "replayed", exit_code=4, seen=seen)
    # Another key may use the same nonce.
    other = hand_signed(params=PARAMS.replace(KEY_ID, "bob"), key=OTHER_KEY)
    verified = verify_request(
        "POST", URL, other, resolve_key=lambda _: OTHER_KEY.public_key, now=NOW, seen=seen
    )
    assert verified.key_id == "bob"


def test_a_request_signed_before_the_server_started_is_refused() -> None:
    """A tester's finding: a read replayed to a restarted server was answered.

    The restarted server's nonce memory is new: a request signed before it began may have
    been answered by the server before, and is refused as one it cannot tell from a replay.
    """
    seen = NonceCache(timedelta(seconds=60), since=NOW + timedelta(seconds=18))
    later = NOW + timedelta(seconds=18)
    refused(signed(), "before this server started", exit_code=4, seen=seen, now=later)
    assert len(seen) == 0
    # Signed in the second the server began: taken (`created` counts whole seconds).
    assert verify(signed(now=later), seen=seen, now=later).created == later


def test_a_refused_request_does_not_use_up_its_nonce() -> None:
    seen = NonceCache(timedelta(seconds=60), since=NOW)
    refused(hand_signed(key=OTHER_KEY), "does not verify", exit_code=4, seen=seen)
    refused(signed(), "does not verify", exit_code=4, method="PUT", seen=seen)
    refused(hand_signed(label="other"), "labelled", seen=seen)
    assert len(seen) == 0
    assert verify(signed(), seen=seen).nonce == NONCE


def test_verification_needs_an_aware_now_and_a_cache_as_wide_as_the_window() -> None:
    with pytest.raises(ValueError, match="time zone"):
        verify(signed(), now=NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="whole window"):
        verify(signed(), seen=NonceCache(timedelta(seconds=30), since=NOW))


# --- the nonce cache -------------------------------------------------------------------


def test_nonce_cache_remembers_until_the_window_has_passed_then_forgets() -> None:
    cache = NonceCache(timedelta(seconds=60), since=NOW)
    assert cache.check_and_add("k", "n1", NOW, now=NOW)
    assert not cache.check_and_add("k", "n1", NOW, now=NOW + timedelta(seconds=60))
    assert cache.check_and_add("k", "n2", NOW + timedelta(seconds=30), now=NOW)
    assert len(cache) == 2
    # The next insert after n1's window drops n1 (n2 still counts).
    assert cache.check_and_add(
        "k", "n3", NOW + timedelta(seconds=61), now=NOW + timedelta(seconds=61)
    )
    assert len(cache) == 2
    assert not cache.check_and_add("k", "n2", NOW + timedelta(seconds=30), now=NOW)


def test_nonce_cache_memory_is_bounded_by_the_window() -> None:
    cache = NonceCache(timedelta(seconds=10))
    for second in range(1000):
        at = NOW + timedelta(seconds=second)
        assert cache.check_and_add("k", f"n{second}", at, now=at)
        assert len(cache) <= 11


def test_nonce_cache_refuses_what_it_could_not_remember() -> None:
    cache = NonceCache(timedelta(seconds=60), since=NOW)
    assert not cache.check_and_add("k", "old", NOW - timedelta(seconds=61), now=NOW)
    assert len(cache) == 0


def test_nonce_cache_admits_a_nonce_once_across_threads() -> None:
    cache = NonceCache(timedelta(seconds=60), since=NOW)
    start = threading.Barrier(8)
    results: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        start.wait()
        outcomes = [cache.check_and_add("k", f"n{i}", NOW, now=NOW) for i in range(200)]
        with lock:
            results.extend(outcomes)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 200
    assert len(cache) == 200


def test_nonce_cache_needs_a_positive_window_and_aware_times() -> None:
    with pytest.raises(ValueError, match="positive"):
        NonceCache(timedelta(0))
    with pytest.raises(ValueError, match="time zone"):
        NonceCache(timedelta(seconds=1)).check_and_add("k", "n", NOW.replace(tzinfo=None))
