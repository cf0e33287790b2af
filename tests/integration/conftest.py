"""A generated landing zone shared by the integration tests (generated once per session)."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.generate import generate

SCALE, SEED, DEFECT_RATE = 0.02, 7, 0.02


@pytest.fixture(scope="session")
def generated_landing(tmp_path_factory):
    """A pristine landing zone; tests copy it into their own lake before changing anything."""
    root = tmp_path_factory.mktemp("generated") / "landing"
    generate(root, scale=SCALE, seed=SEED, defect_rate=DEFECT_RATE)
    return root


@pytest.fixture
def fresh_lake(tmp_path, generated_landing):
    lake = tmp_path / "lake"
    shutil.copytree(generated_landing, lake / "landing")
    return lake


def manifest(lake) -> dict:
    return json.loads((lake / "landing" / "_manifest.json").read_text())
