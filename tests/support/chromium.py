"""Debian's chromium, which renders the run reports headless (make setup installs it)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

CHROMIUM = shutil.which("chromium")


def chromium(html: Path, tmp_path: Path, *what: str) -> subprocess.CompletedProcess:
    """Debian's chromium, headless and offline-safe (no sync, updates or background fetches)."""
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--enable-logging=stderr", "--v=0", *what, html.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
