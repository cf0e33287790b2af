"""terraform and a provider mirror, when this machine has them: one copy of aws/terraform in a
temp dir, each env initialised once per session (nothing is written into the repo)."""

from __future__ import annotations

import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.terraform.hcl import ENVS, TF_ROOT

MIRROR = Path(os.environ.get("TF_PROVIDER_MIRROR", "/opt/tf-plugins"))
CLI_CONFIG = f"""provider_installation {{
  filesystem_mirror {{
    path    = "{MIRROR}"
    include = ["registry.terraform.io/*/*"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
"""


@dataclass
class Terraform:
    root: Path  # the copy of aws/terraform
    env: dict[str, str]

    def run(self, *args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["terraform", *args],
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def terraform_available() -> bool:
    return (
        shutil.which("terraform") is not None
        and (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir()
    )


@pytest.fixture(scope="session")
def terraform(tmp_path_factory) -> Terraform | None:
    """None (with a warning) where terraform or the mirror is absent: the tests then check the
    configuration in Python against the provider schema instead."""
    if not terraform_available():
        warnings.warn(
            f"terraform or the provider mirror {MIRROR} is absent: checking aws/terraform with python-hcl2 "
            "against the provider schema only (no terraform validate / terraform test)",
            stacklevel=1,
        )
        return None
    base = tmp_path_factory.mktemp("terraform")
    (base / "cli.tfrc").write_text(CLI_CONFIG)
    root = base / "terraform"
    shutil.copytree(
        TF_ROOT, root, ignore=shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
    )
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(base / "cli.tfrc"),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        "NO_COLOR": "1",
    }
    tf = Terraform(root, env)
    for name in ENVS:
        done = tf.run("init", "-backend=false", "-input=false", "-no-color", cwd=root / "envs" / name)
        assert done.returncode == 0, f"terraform init ({name}) failed:\n{done.stdout}\n{done.stderr}"
    return tf
