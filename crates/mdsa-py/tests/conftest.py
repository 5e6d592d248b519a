"""Shared fixtures: one MDSA on the built-in models for the whole session.

The models are the ones ``cargo xtask fetch-models`` puts in the Hugging Face
cache (MiniLM routes, SmolLM2 answers); ``cargo xtask wheel`` runs these
tests against the installed wheel with ``HF_HUB_OFFLINE=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import mdsa

# Short answers keep the suite quick; what is tested does not need long ones.
SHORT = 12


@pytest.fixture(scope="session")
def m() -> mdsa.MDSA:
    return mdsa.MDSA()


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    configured = os.environ.get("MDSA_EXAMPLES_DIR")
    folder = Path(configured) if configured else Path(__file__).resolve().parents[3] / "examples" / "python"
    assert folder.is_dir(), f"the Python examples are not at {folder}"
    return folder
