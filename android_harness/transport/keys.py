"""This host's ADB RSA key: created once at ``~/.android/adbkey`` (+ ``.pub``) and reused, as adb does.

A phone remembers the public key after the user ticks "Always allow", so the key must be
the same file the official adb uses; generating a new one per run would ask again every time.
``MOBILE_COMPRESS_ADB_KEY`` (or the ``path`` argument) points elsewhere, e.g. in tests.
The private key is created with mode 0600 in the same system call that creates the file, so
no other local user can ever read it (writing it first and chmod-ing afterwards leaves a window).
"""
from __future__ import annotations

import os
from pathlib import Path

from android_harness.transport.base import TransportError

ENV_KEY = "MOBILE_COMPRESS_ADB_KEY"


def default_key_path() -> Path:
    """The private key location: $MOBILE_COMPRESS_ADB_KEY, else $ANDROID_USER_HOME/adbkey, else ~/.android/adbkey."""
    if os.environ.get(ENV_KEY):
        return Path(os.environ[ENV_KEY]).expanduser()
    if os.environ.get("ANDROID_USER_HOME"):
        return Path(os.environ["ANDROID_USER_HOME"]).expanduser() / "adbkey"
    return Path.home() / ".android" / "adbkey"


def ensure_key(path: Path | str | None = None) -> Path:
    """Return the private key path, creating the key pair (private key mode 0600) if it does not exist yet."""
    key = Path(path).expanduser() if path else default_key_path()
    try:
        if not key.is_file():
            _create_private_key(key)
        if not Path(f"{key}.pub").is_file():
            _write_public_key(key)
    except (OSError, ValueError) as err:  # ValueError: an unreadable private key, when only .pub is missing
        raise TransportError(f"cannot create the ADB key {key}: {err}; set {ENV_KEY} to a writable path") from err
    return key


def _create_private_key(key: Path) -> None:
    """A new 2048-bit RSA key in PKCS#8 PEM, as adb writes it; the file is born 0600 (O_EXCL: never
    overwrites a key another process made meanwhile)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # made by a concurrent run: use that one
    with os.fdopen(fd, "wb") as out:
        out.write(pem)


def _write_public_key(key: Path) -> None:
    """``adbkey.pub`` from the private key (Android's RSAPublicKey struct, base64, then " user@host")."""
    from adb_shell.auth.keygen import write_public_keyfile

    tmp = Path(f"{key}.pub.{os.getpid()}.tmp")
    try:
        write_public_keyfile(str(key), str(tmp))
        tmp.replace(f"{key}.pub")  # readers never see half a public key
    finally:
        tmp.unlink(missing_ok=True)


def load_signer(path: Path | str | None = None):
    """An adb-shell signer for the key at ``path`` (created if missing)."""
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    key = ensure_key(path)
    try:
        return PythonRSASigner.FromRSAKeyPath(str(key))
    except (OSError, ValueError) as err:
        raise TransportError(f"cannot read the ADB key {key}: {err}; delete it to have a new one made") from err


def public_key_text(path: Path | str | None = None) -> str:
    """The public key in adb's format (base64 blob, then ' user@host'), as a device stores it."""
    key = ensure_key(path)
    return Path(f"{key}.pub").read_text().strip()
