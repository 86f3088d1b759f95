"""This host's ADB RSA key: created once at ``~/.android/adbkey`` (+ ``.pub``) and reused, as adb does.

A phone remembers the public key after the user ticks "Always allow", so the key must be
the same file the official adb uses; generating a new one per run would ask again every time.
``MOBILE_COMPRESS_ADB_KEY`` (or the ``path`` argument) points elsewhere, e.g. in tests.
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
    """Return the private key path, creating the key pair (mode 0600) if it does not exist yet."""
    from adb_shell.auth.keygen import keygen, write_public_keyfile

    key = Path(path).expanduser() if path else default_key_path()
    try:
        if not key.is_file():
            key.parent.mkdir(parents=True, exist_ok=True)
            keygen(str(key))
            key.chmod(0o600)
        elif not Path(f"{key}.pub").is_file():
            write_public_keyfile(str(key), f"{key}.pub")
    except OSError as err:
        raise TransportError(f"cannot create the ADB key {key}: {err}; set {ENV_KEY} to a writable path") from err
    return key


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
