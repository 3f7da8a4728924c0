"""Fixtures for the policy tests: the loaded default set and temporary policy dirs."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from policy_facts import POLICIES

from pcii_vault.policy.engine import PolicyEngine


@pytest.fixture(scope="session")
def engine() -> PolicyEngine:
    return PolicyEngine.load(POLICIES)


@pytest.fixture
def policy_dir(tmp_path: Path) -> Callable[[dict[str, str]], Path]:
    """Make a policy directory with the shipped schema and the given policy files."""

    def make(files: dict[str, str]) -> Path:
        directory = tmp_path / "policies"
        directory.mkdir()
        shutil.copy(POLICIES / "pcii.cedarschema", directory / "pcii.cedarschema")
        for name, text in files.items():
            (directory / name).write_text(text, encoding="utf-8")
        return directory

    return make
