"""Who may use the app: a shared secret when it serves beyond this machine.

Streamlit's own log-in needs an identity provider, which does not fit an offline
default. When `$STYLEDROP_APP_PASSWORD_FILE` names a file (`styledrop serve
--password-file`, required for an address other than loopback), every session must give
the secret it holds before any page runs; without it the app is open, which `serve`
allows on loopback only. Which base models jobs may use is a configured list
(`$STYLEDROP_BASES`), not a path typed into the app.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

import streamlit as st

PASSWORD_FILE_ENV = "STYLEDROP_APP_PASSWORD_FILE"
BASES_ENV = "STYLEDROP_BASES"


def read_secret(path: str | Path) -> str:
    """The secret in a password file (its first line, stripped).

    Raises:
        ValueError: the file is missing, empty, or readable by other users.
    """
    path = Path(path).expanduser()
    try:
        mode = path.stat().st_mode
        secret = path.read_text().strip().splitlines()[0].strip() if path.is_file() else ""
    except (OSError, IndexError):
        secret, mode = "", 0
    if not secret:
        raise ValueError(f"{path}: no such password file, or it is empty; put the secret in it.")
    if mode & 0o077:
        raise ValueError(f"{path} is readable by other users; run `chmod 600 {path}`.")
    return secret


def require_login() -> None:
    """Stops the page until this session has given the shared secret (when one is set)."""
    path = os.environ.get(PASSWORD_FILE_ENV)
    if not path or st.session_state.get("authenticated"):
        return
    secret = read_secret(path)
    st.title("StyleDrop")
    given = st.text_input("Password", type="password", key="password")
    if st.button("Sign in", key="sign_in", type="primary"):
        if hmac.compare_digest(given.encode(), secret.encode()):
            st.session_state["authenticated"] = True
            st.session_state.pop("password", None)
            st.rerun()
        st.error("Wrong password.")
    st.stop()


def allowed_bases() -> list[str]:
    """Base model folders (as the workers see them) that jobs may use, besides the embedded.

    From `$STYLEDROP_BASES`, separated like PATH (`:` on Linux).
    """
    raw = os.environ.get(BASES_ENV, "")
    return [part.strip() for part in raw.split(os.pathsep) if part.strip()]
