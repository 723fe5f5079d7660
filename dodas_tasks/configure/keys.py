"""SSH key pairs made in-process (ed25519, via cryptography), so no ssh-keygen is needed on the worker."""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass(frozen=True)
class KeyPair:
    """An OpenSSH key pair; the private half is a secret and is kept out of repr()."""

    private_openssh: str = field(repr=False)
    public_openssh: str


def generate_keypair(comment: str = "dodas") -> KeyPair:
    """A fresh ed25519 key pair: private key in OpenSSH PEM form, public key as an authorized_keys line."""
    private_key = Ed25519PrivateKey.generate()
    private_text = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode("ascii")
    public_text = (
        private_key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode("ascii")
    )
    if comment:
        public_text = f"{public_text} {comment}"
    return KeyPair(private_openssh=private_text, public_openssh=public_text)


def load_private_key(private_openssh: str) -> paramiko.PKey:
    """Parse an unencrypted private key (ed25519, ECDSA or RSA) for paramiko; errors never echo the key."""
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(private_openssh))
        except (paramiko.SSHException, ValueError, TypeError):
            continue
    raise ValueError(
        "the SSH private key could not be read: expected an unencrypted ed25519, ECDSA or RSA key "
        "in OpenSSH or PEM form (for example one made by dodas_tasks.configure.generate_keypair())"
    )
