"""Who is at the keyboard: the operator name recorded on every event."""
from __future__ import annotations

import getpass
import os


def operator_name(option: str | None = None) -> str:
    """``--operator``, else ``RUNBOOK_OPERATOR``, else the login name."""
    if option:
        return option
    if os.environ.get("RUNBOOK_OPERATOR"):
        return os.environ["RUNBOOK_OPERATOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid{os.getuid()}"
