"""The README's two set-up commands stay true: the test command is exactly what CI runs."""

from __future__ import annotations

import re

from conftest import REPO


def test_readme_starts_with_the_two_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    main_job, tests = blocks[0].strip(), blocks[1].strip()
    assert "ddlprof wrap torchrun" in main_job and "examples/ddp_train.py" in main_job
    ci_lines = [
        line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.startswith("python3")
    ]
    assert ci_lines == [tests]
