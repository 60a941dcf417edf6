"""The shipped table of published training throughput (issue 14): every row names a GPU of the specs
table and a model of the zoo, a valid precision, a per-GPU figure that is the total over the GPUs, and
a source with its commit and date; the reader rejects a bad file, naming the row."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import REPO

from ddlprof.errors import DdlprofError
from ddlprof.models.gpus import list_gpus
from ddlprof.models.published import COLUMNS, PRECISIONS, load_published, parse_published
from ddlprof.models.zoo import known_names

TABLE = REPO / "ddlprof" / "models" / "data" / "published_throughput.csv"
NVIDIA = "NVIDIA/DeepLearningExamples"
LAMBDA = "lambdal/deeplearning-benchmark"


@pytest.fixture(scope="module")
def rows():
    return load_published()


def test_every_gpu_and_model_is_known(rows):
    gpus, models = set(list_gpus()), set(known_names())
    assert {r.gpu for r in rows} <= gpus
    assert {r.model for r in rows} <= models


def test_precisions_numbers_and_per_gpu_figures(rows):
    for r in rows:
        assert r.precision in PRECISIONS, r
        assert r.batch_per_gpu > 0 and r.gpus >= r.nodes >= 1 and r.accumulation_steps >= 1, r
        assert r.samples_per_s > 0, r
        assert r.samples_per_s_per_gpu == pytest.approx(r.samples_per_s / r.gpus, abs=0.006), r


def test_every_row_cites_a_source_commit_and_date(rows):
    for r in rows:
        repo, path = r.source.split(":", 1)
        assert repo in (NVIDIA, LAMBDA) and path, r
        assert len(r.source_commit) == 40 and r.source_date and r.source_detail and r.caveat, r
        assert r.framework and r.data.split()[0] in ("synthetic", "real", "unknown"), r


def test_the_provenance_file_matches_the_table(rows):
    provenance = json.loads(TABLE.with_suffix(".json").read_text())
    assert provenance["rows"] == len(rows)
    for repo, entry in provenance["sources"].items():
        assert {r.source_commit for r in rows if r.source.startswith(repo) and repo == LAMBDA} <= {
            entry["commit"]
        }
        assert {r.source.split(":", 1)[1] for r in rows if r.source.startswith(repo)} == set(entry["files"])


def test_the_issue_rows_are_there(rows):
    """The figures issue 14 quotes, and at least 18 single-GPU vision rows on V100/A100/H100/H200."""

    def one(model, gpu, precision, batch, source):
        found = [
            r
            for r in rows
            if (r.model, r.gpu, r.precision, r.batch_per_gpu, r.gpus) == (model, gpu, precision, batch, 1)
            and r.source.startswith(source)
        ]
        assert len(found) == 1, (model, gpu, precision, batch, source, found)
        return found[0].samples_per_s

    assert one("resnet50", "A100-80GB", "tf32", 256, NVIDIA) == 938
    assert one("resnet50", "A100-80GB", "amp-fp16", 256, NVIDIA) == 2470
    assert one("resnet50", "V100-16GB", "fp32", 112, NVIDIA) == 367
    assert one("resnet50", "V100-16GB", "amp-fp16", 256, NVIDIA) == 1200
    assert one("resnet50", "H100", "amp-fp16", 1280, LAMBDA) == 2791
    families = ("V100", "A100", "H100", "H200")
    headline = [
        r
        for r in rows
        if r.gpus == 1 and r.model in ("resnet50", "efficientnet_b0") and r.gpu.startswith(families)
    ]
    assert len(headline) >= 18
    assert {r.gpu.split("-")[0] for r in headline} == set(families)


def test_more_than_linear_multi_gpu_figures_are_flagged(rows):
    """A multi-GPU figure above GPUs x the same source's 1-GPU figure says so in its caveat (Lambda's
    8-GPU BERT-base figures count max_steps that never ran)."""
    single = {
        (r.source, r.model, r.gpu, r.precision, r.batch_per_gpu, r.input): r.samples_per_s
        for r in rows
        if r.gpus == 1
    }
    flagged = 0
    for r in rows:
        key = (r.source, r.model, r.gpu, r.precision, r.batch_per_gpu, r.input)
        if r.gpus > 1 and key in single and r.samples_per_s > r.gpus * single[key]:
            assert "SUSPECT" in r.caveat, r
            flagged += 1
    assert flagged >= 4
    steps = [r for r in rows if "STEPS NOT RUN COUNTED" in r.caveat]
    assert steps and all(r.source.startswith(LAMBDA) and r.model == "bert-base" for r in steps)


def _good_row() -> dict[str, str]:
    return next(csv.DictReader(io.StringIO(TABLE.read_text())))


def _text(**changes: str) -> str:
    row = {**_good_row(), **changes}
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerow(_good_row())
    writer.writerow(row)
    return out.getvalue()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gpu": "RTX 4090"}, "unknown GPU"),
        ({"gpu": "a100-80gb"}, "must be spelled as in the specs table"),
        ({"model": "resnet51"}, "not a name of ddlprof's model zoo"),
        ({"precision": "bf16"}, "precision 'bf16' is not one of"),
        ({"samples_per_s": "-938", "samples_per_s_per_gpu": "-938"}, "samples_per_s must be positive"),
        ({"batch_per_gpu": "0"}, "batch_per_gpu must be positive"),
        ({"samples_per_s_per_gpu": "900"}, "is not samples_per_s / gpus"),
        ({"source_commit": ""}, "source_commit must be a full 40-hex commit"),
        ({"source": "somewhere"}, "source must be owner/repo:path"),
        ({"gpus": "two"}, "gpus is not a whole number"),
    ],
)
def test_the_reader_rejects_a_bad_row_and_names_it(tmp_path, changes, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(_text(**changes))
    with pytest.raises(DdlprofError, match=r"bad\.csv line 3") as err:
        load_published(bad)
    assert message in str(err.value)


def test_the_reader_rejects_a_wrong_header_and_an_empty_file():
    with pytest.raises(DdlprofError, match="header must be"):
        parse_published("model,gpu\nresnet50,H100\n")
    with pytest.raises(DdlprofError, match="no rows"):
        parse_published(",".join(COLUMNS) + "\n")


def test_reading_without_the_model_check_imports_no_torch():
    code = (
        "import sys; from ddlprof.models.published import load_published; "
        "rows = load_published(check_models=False); print(len(rows), 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    count, torch_loaded = out.stdout.split()
    assert int(count) > 0 and torch_loaded == "False"
