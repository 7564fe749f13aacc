"""Defaults every `sendo` command shares."""
from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = os.environ.get("SENDO_DATA_DIR") or str(Path.home() / ".sendo")
