"""Key agreement, key derivation and share encryption of federated secure aggregation.

Everything is from `cryptography`: X25519 or P-256 ECDH (a round uses the curve every participant
offers; browsers without X25519 offer P-256 through WebCrypto), HKDF-SHA256 bound to the round's
session id and to the ordered pair of participant indices, and AES-256-GCM for the shares the
server relays. Public keys travel raw: 32 bytes for X25519, the 65-byte uncompressed point for
P-256 (WebCrypto's "raw" format). A private key becomes an integer (for Shamir sharing) through
its 32 raw bytes / its scalar, and back.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import SecAggError

NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32


class Curve(StrEnum):
    """Key-agreement curves, by preference."""

    X25519 = "x25519"
    P256 = "p256"


PUBLIC_KEY_BYTES: dict[Curve, int] = {Curve.X25519: 32, Curve.P256: 65}


class Purpose(StrEnum):
    """What a derived key is for (part of the HKDF info, so the keys are independent)."""

    MASK = "mask"
    SHARE = "share"


PrivateKey = x25519.X25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A private key and its raw public encoding."""

    curve: Curve
    private: PrivateKey
    public: bytes

    @classmethod
    def generate(cls, curve: Curve) -> KeyPair:
        """A fresh key pair from the OS CSPRNG."""
        if curve is Curve.X25519:
            key: PrivateKey = x25519.X25519PrivateKey.generate()
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        return cls(curve, key, _public_bytes(key))

    @classmethod
    def from_secret(cls, curve: Curve, secret: int) -> KeyPair:
        """The key pair whose `secret()` is `secret` (e.g. rebuilt from Shamir shares)."""
        try:
            if curve is Curve.X25519:
                key: PrivateKey = x25519.X25519PrivateKey.from_private_bytes(
                    secret.to_bytes(KEY_BYTES, "big")
                )
            else:
                key = ec.derive_private_key(secret, ec.SECP256R1())
        except (ValueError, OverflowError) as error:
            raise SecAggError(f"not a {curve} private key: {error}") from None
        return cls(curve, key, _public_bytes(key))

    def secret(self) -> int:
        """The private key as a non-negative integer below 2^256."""
        if isinstance(self.private, x25519.X25519PrivateKey):
            return int.from_bytes(self.private.private_bytes_raw(), "big")
        return self.private.private_numbers().private_value

    def agree(self, peer_public: bytes) -> bytes:
        """The ECDH shared secret with a peer's raw public key; SecAggError if it is invalid."""
        try:
            if isinstance(self.private, x25519.X25519PrivateKey):
                return self.private.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
            peer = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), peer_public)
            return self.private.exchange(ec.ECDH(), peer)
        except ValueError as error:  # wrong length, not on the curve, low-order point
            raise SecAggError(f"invalid {self.curve} public key: {error}") from None


def _public_bytes(key: PrivateKey) -> bytes:
    if isinstance(key, x25519.X25519PrivateKey):
        return key.public_key().public_bytes_raw()
    return key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def check_public_key(curve: Curve, public: bytes) -> None:
    """Raise SecAggError unless `public` is a valid raw public key of `curve`."""
    if len(public) != PUBLIC_KEY_BYTES[curve]:
        raise SecAggError(
            f"a {curve} public key is {PUBLIC_KEY_BYTES[curve]} bytes, got {len(public)}"
        )
    try:
        if curve is Curve.X25519:
            x25519.X25519PublicKey.from_public_bytes(public)
        else:
            ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public)
    except ValueError as error:
        raise SecAggError(f"invalid {curve} public key: {error}") from None


def derive(shared: bytes, session: bytes, purpose: Purpose, a: int, b: int) -> bytes:
    """A 32-byte key for (session, purpose, unordered pair {a, b}) from an ECDH secret."""
    low, high = min(a, b), max(a, b)
    info = f"disco-secagg/{purpose.value}/{low}/{high}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=session, info=info).derive(shared)


def _aad(session: bytes, sender: int, recipient: int) -> bytes:
    return session + sender.to_bytes(4, "big") + recipient.to_bytes(4, "big")


def encrypt(key: bytes, plaintext: bytes, session: bytes, sender: int, recipient: int) -> bytes:
    """nonce || AES-GCM(plaintext), bound to (session, sender, recipient) as associated data."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(session, sender, recipient))


def decrypt(key: bytes, sealed: bytes, session: bytes, sender: int, recipient: int) -> bytes:
    """The plaintext of `encrypt`; SecAggError when it was altered or is for someone else."""
    if len(sealed) < NONCE_BYTES + TAG_BYTES:
        raise SecAggError("an encrypted share is too short")
    try:
        return AESGCM(key).decrypt(
            sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], _aad(session, sender, recipient)
        )
    except InvalidTag:
        raise SecAggError(f"the share from participant {sender} does not decrypt") from None


def sealed_length(plaintext_length: int) -> int:
    """Length of `encrypt`'s output for a plaintext of this length."""
    return NONCE_BYTES + plaintext_length + TAG_BYTES


def commitment(session: bytes, index: int, seed: bytes) -> bytes:
    """SHA-256 commitment to a self-mask seed, checked when the server rebuilds it."""
    return hashlib.sha256(b"disco-secagg/seed" + session + index.to_bytes(4, "big") + seed).digest()
