"""Password hashing (argon2id) and the password policy.

Policy, after NIST SP 800-63B: at least 8 characters, up to 1,024, any
characters (nothing is truncated or stripped), not one of the very common
passwords, not the account's own e-mail address.
"""

from __future__ import annotations

import functools
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 1024

_hasher = PasswordHasher()


def use_hasher(hasher: PasswordHasher) -> None:
    """Replace the argon2 parameters for this process. Only the test suite
    does this (``host.testing``), to sign hundreds of users in cheaply; the
    hashes stay argon2id and verify the same way."""
    global _hasher
    _hasher = hasher
    _dummy_hash.cache_clear()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password, verified when the account does not exist
    so a failed login costs the same time either way. Made on first use, not
    at import: hashing costs ~100 ms, and every CLI start would pay it."""
    return _hasher.hash("mosaic-timing-equaliser-not-a-password")


@functools.lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    path = Path(__file__).with_name("common_passwords.txt")
    lines = (line.strip() for line in path.read_text().splitlines())
    return frozenset(line.lower() for line in lines if line and not line.startswith("#"))


def policy_problem(password: str, email: str | None = None) -> str | None:
    """Why ``password`` is not acceptable, or None."""
    if len(password) < MIN_LENGTH:
        return f"Use at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    if password.lower() in common_passwords():
        return "This password is too common; choose another."
    if email and password.lower() == email.lower():
        return "Do not use your e-mail address as your password."
    return None


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        try:
            _hasher.verify(_dummy_hash(), password)
        except VerificationError:
            pass
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
