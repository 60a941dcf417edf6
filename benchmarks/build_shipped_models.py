"""Build the stall-model fit shipped with the package: ``ddlprof/models/data/stall_models.json``.

    /tmp/venv/bin/python benchmarks/build_shipped_models.py      # or any Python with ddlprof's deps

``ddlprof.models.registry.load_models`` refits the stall models whenever ``$DDLPROF_HOME`` has no
current fit; a refit imports scikit-learn and runs the leave-one-model-out evaluation, about a
second. So that a fresh install answers ``ddlprof advise`` and ``ddlprof model predict`` at once,
the same fit of the shipped dataset (no reported runs) is shipped, stamped like any saved fit
(format, ddlprof version, hash of the rows): ``load_models`` uses it only while that stamp matches.
Re-run this after changing the dataset, the models or the ddlprof version
(``tests/test_advise.py`` checks that the shipped fit equals a refit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

OUT = REPO / "ddlprof" / "models" / "data" / "stall_models.json"


def main() -> int:
    from ddlprof.models.dataset import training_rows
    from ddlprof.models.registry import fit

    rows, info = training_rows(include_store=False)
    info["store"] = "not used: the fit shipped with ddlprof (shipped dataset only)"
    fitted = fit(save=False, training=(rows, info))
    record = {**fitted.record, "command": "python benchmarks/build_shipped_models.py"}
    OUT.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT} (selected: {record['selected']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
