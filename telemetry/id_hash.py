"""Keyed hashes of secret identifiers (code session ids, ...) for spans: HMAC-SHA256 with a per-deployment key.

A plain hash of a guessable id is reversible by guessing (session ids are ``{conversation}-{tool}-{HHMMSSmmm}``
with the conversation id in clear beside them). With a secret key, a hash says only "the same id as on that
other span", and only within one deployment.

The key comes from ``FLLM_TELEMETRY_HASH_KEY`` (16 characters or more, else a warning; ``callstack up``
generates one per data dir, kept in its 0600 secrets file, and gives it to every service, so hashes
correlate across hops).
Without it, each process draws a random key: nothing is reversible, but the same id hashes differently in
two services. Every deployment that wants cross-service correlation sets the variable (Docker Compose,
Azure): a warning says so once per process.
"""

from __future__ import annotations

import functools
import hmac
import logging
import secrets

from services.common.settings import SettingsError, TelemetrySwitches

HASH_KEY_ENV = TelemetrySwitches.variable("telemetry_hash_key")  # FLLM_TELEMETRY_HASH_KEY
MIN_KEY_CHARS = 16
log = logging.getLogger("foundationallm.telemetry")


@functools.cache
def deployment_key() -> bytes:
    """The process's key: ``FLLM_TELEMETRY_HASH_KEY``, or a random one (with a warning)."""
    try:
        configured = TelemetrySwitches().telemetry_hash_key
    except SettingsError as error:  # another switch is malformed (refused at the service's startup already)
        log.warning("telemetry settings: %s; ids on spans are hashed with a random key.", error)
        configured = None
    if configured:
        if len(configured) < MIN_KEY_CHARS:  # used all the same: a span is no place to fail a request
            log.warning("%s is shorter than %d characters: a guessable key makes the hashes reversible.",
                        HASH_KEY_ENV, MIN_KEY_CHARS)
        return configured.encode()
    log.warning("%s is not set: ids on this process's spans are hashed with a random key of its own "
                "(not comparable with other services' hashes).", HASH_KEY_ENV)
    return secrets.token_bytes(32)


def reset_key() -> None:
    """Read the key from the environment again at the next hash (tests, key rotation)."""
    deployment_key.cache_clear()


def keyed_hash(value: str, length: int = 16, key: bytes | None = None) -> str:
    """The first ``length`` hex digits of HMAC-SHA256(key, value); ``key`` defaults to the deployment's."""
    return hmac.digest(key if key is not None else deployment_key(), value.encode(), "sha256").hex()[:length]
