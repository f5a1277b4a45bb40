"""Get a certificate over ACME (RFC 8555) with HTTP-01, using certbot's ``acme`` library.

:func:`obtain` is the whole protocol for one host: account (made once per key,
found again afterwards), order, HTTP-01 challenge, finalize, download. The
challenge response is handed to ``publish``/``withdraw`` callables, so where it
is served from is the caller's business (see :mod:`slipway.router.challenges`).

Every failure comes out as :class:`AcmeFailure` with a ``kind`` a status can be
built from; errors from ``requests``, ``josepy`` and ``acme`` are translated
here, in one place, and never leak. Bad nonces are retried by the library.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable
from pathlib import Path

import josepy as jose
import requests
from acme import challenges, client, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from slipway.router.certs import make_csr_pem
from slipway.router.errors import RouterError

_USER_AGENT = "slipway"
_NONCE_ATTEMPTS = 4


class AcmeFailure(RouterError):
    """The ACME server did not give a certificate; ``kind`` says why.

    Kinds: ``unreachable`` (directory or server down), ``rate_limited`` (with
    ``retry_after`` seconds when the server said), ``rejected`` (the CA refuses
    the identifier, e.g. a forbidden or unknown name), ``challenge_failed``
    (the CA could not fetch the HTTP-01 response), ``timeout``, ``error``.
    """

    code = "acme_failed"

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class _Network(client.ClientNetwork):
    """ClientNetwork that remembers the last Retry-After (the library drops headers)."""

    last_retry_after: float | None = None

    def _send_request(self, method: str, url: str, *args, **kwargs):  # type: ignore[override]
        response = super()._send_request(method, url, *args, **kwargs)
        _Network.last_retry_after = _parse_retry_after(response.headers.get("Retry-After"))
        return response


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _jwk(account_key_pem: bytes) -> tuple[jose.JWK, jose.JWASignature]:
    key = serialization.load_pem_private_key(account_key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key), jose.ES256
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key), jose.RS256
    raise AcmeFailure("error", "the ACME account key is neither EC nor RSA")


def obtain(
    *,
    directory_url: str,
    account_key_pem: bytes,
    email_address: str | None,
    host: str,
    key_pem: bytes,
    publish: Callable[[str, str], None],
    withdraw: Callable[[str], None],
    verify: Path | bool = True,
    timeout: float = 90.0,
) -> bytes:
    """Get a certificate for ``host`` over ``key_pem``; return the full chain PEM.

    ``publish(token, key_authorization)`` must make the response reachable at
    ``http://<host>/.well-known/acme-challenge/<token>`` before it returns;
    ``withdraw(token)`` is called afterwards, success or not. ``verify`` is a CA
    bundle for the directory's HTTPS (or True for the system's).
    Raises AcmeFailure.
    """
    jwk, alg = _jwk(account_key_pem)
    net = _Network(jwk, alg=alg, verify_ssl=str(verify) if isinstance(verify, Path) else verify,
                   user_agent=_USER_AGENT, timeout=30)
    try:
        for attempt in range(_NONCE_ATTEMPTS):
            try:
                return _obtain(net, directory_url, email_address, host, key_pem, publish,
                               withdraw, timeout)
            except (messages.Error, errors.BadNonce) as exc:
                # The library retries a bad nonce once; servers may refuse a few in a
                # row (pebble refuses 5% on purpose). Start the order again.
                code = getattr(exc, "code", "badNonce")
                if code != "badNonce" or attempt == _NONCE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")
    except AcmeFailure:
        raise
    except RouterError as exc:  # from publish: the router could not take the response
        raise AcmeFailure("error", f"could not serve the HTTP-01 response for {host}: "
                                   f"{exc.message}") from exc
    except messages.Error as exc:
        raise _from_problem(exc, host) from exc
    except errors.ValidationError as exc:
        raise AcmeFailure("challenge_failed", _validation_message(exc, host)) from exc
    except errors.BadNonce as exc:
        raise AcmeFailure("error", f"the ACME server kept refusing nonces for {host}") from exc
    except errors.TimeoutError as exc:
        raise AcmeFailure("timeout", f"the ACME server did not validate {host} within "
                                     f"{timeout:g} s") from exc
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise AcmeFailure("unreachable", f"the ACME server at {directory_url} is unreachable: "
                                         f"{type(exc).__name__}") from exc
    except requests.RequestException as exc:
        raise AcmeFailure("unreachable", f"the ACME server at {directory_url} failed: "
                                         f"{type(exc).__name__}") from exc
    except (errors.Error, jose.errors.Error, ValueError) as exc:
        raise AcmeFailure("error", f"ACME error for {host}: {exc}") from exc


def _obtain(net: _Network, directory_url: str, email_address: str | None, host: str,
            key_pem: bytes, publish: Callable[[str, str], None],
            withdraw: Callable[[str], None], timeout: float) -> bytes:
    directory = client.ClientV2.get_directory(directory_url, net)
    acme = client.ClientV2(directory, net)
    registration = messages.NewRegistration.from_data(
        email=email_address, terms_of_service_agreed=True)
    # A retry after refused nonces reuses ``net``: newAccount must be signed with the
    # key itself (JWK), not the account URL an earlier attempt left behind (kid).
    net.account = None
    try:
        account = acme.new_account(registration)
    except errors.ConflictError as exc:
        # The key already has an account (made by an earlier run): use it.
        account = acme.query_registration(
            messages.RegistrationResource(uri=exc.location, body=messages.Registration()))
    net.account = account
    order = acme.new_order(make_csr_pem(key_pem, host))
    tokens: list[str] = []
    try:
        for authz in order.authorizations:
            if authz.body.status == messages.STATUS_VALID:
                continue  # reused authorization: nothing to prove again
            challenge = next((c for c in authz.body.challenges
                              if isinstance(c.chall, challenges.HTTP01)), None)
            if challenge is None:
                raise AcmeFailure("rejected", f"the ACME server offers no HTTP-01 challenge "
                                              f"for {host}")
            response, validation = challenge.response_and_validation(net.key)
            token = challenge.chall.encode("token")
            publish(token, validation)
            tokens.append(token)
            acme.answer_challenge(challenge, response)
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)
        order = acme.poll_and_finalize(order, deadline)
    finally:
        for token in tokens:
            withdraw(token)
    if not order.fullchain_pem:
        raise AcmeFailure("error", f"the ACME server gave no certificate for {host}")
    return order.fullchain_pem.encode()


def _from_problem(exc: messages.Error, host: str) -> AcmeFailure:
    code = exc.code or ""
    detail = exc.detail or exc.description or str(exc)
    if code == "rateLimited":
        retry = _Network.last_retry_after
        wait = f"; retry after {retry:g} s" if retry is not None else ""
        return AcmeFailure("rate_limited", f"rate limited by the ACME server: {detail}{wait}",
                           retry_after=retry)
    if code in ("rejectedIdentifier", "unsupportedIdentifier", "caa", "malformed"):
        return AcmeFailure("rejected", f"the ACME server rejected {host}: {detail}")
    # A failed DNS lookup happens while the CA validates: the challenge failed, and
    # may pass later (a slow resolver, a record still propagating).
    if code in ("connection", "unauthorized", "incorrectResponse", "tls", "dns"):
        return AcmeFailure("challenge_failed", f"the HTTP-01 challenge for {host} failed: "
                                               f"{detail}")
    return AcmeFailure("error", f"ACME error for {host} ({code or 'unknown'}): {detail}")


def _validation_message(exc: errors.ValidationError, host: str) -> str:
    for authzr in exc.failed_authzrs:
        for chall in authzr.body.challenges:
            if chall.error is not None:
                return (f"the HTTP-01 challenge for {host} failed: "
                        f"{chall.error.detail or chall.error.code}")
    return f"the HTTP-01 challenge for {host} failed"
