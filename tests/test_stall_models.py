"""Stall and step-time models: monotone in bandwidth, validated on the shipped 2 x H200 data, stored
as JSON and refitted when stale, and the ``ddlprof model fit|evaluate|predict`` commands."""

from __future__ import annotations

import hashlib
import itertools
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO, ddlprof, env

from ddlprof.advisor.catalog import load_catalog
from ddlprof.errors import DdlprofError
from ddlprof.models import dataset, registry
from ddlprof.models.evaluate import TARGET_STEP_MAPE_PCT, evaluate
from ddlprof.models.learned import FEATURES, LearnedStallModel
from ddlprof.models.predict import predict
from ddlprof.models.stall_models import components, fit_models

# Fastest first: a falling bandwidth must never give a lower prediction.
BANDWIDTHS = (2000.0, 296.87, 100.0, 27.92, 4.06, 1.0, 0.25)
MODELS = ("resnet50", "vgg16", "densenet121", "gpt2", "alexnet", "vit_b_16")


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """A temporary ddlprof home: no fitted models and no reported runs of the user's are touched."""
    monkeypatch.setenv("DDLPROF_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DDLPROF_HOME", str(tmp_path_factory.mktemp("home")))
        return registry.fit(save=False)


def _home_env(home: Path) -> dict[str, str]:
    return {**env(), "DDLPROF_HOME": str(home)}


def _non_decreasing(values: list[float]) -> bool:
    return all(b >= a - 1e-9 for a, b in itertools.pairwise(values))


@pytest.mark.parametrize("use", ["learned", "baseline"])
@pytest.mark.parametrize("name", MODELS)
def test_predictions_never_fall_as_bandwidth_falls(fitted, use, name):
    """Through the whole predict path (defaults for latency included), intra- and inter-node."""
    for gpus, nodes, batch, single in ((2, 1, 32, 5.0), (8, 1, 64, 80.0), (8, 4, 32, 30.0), (1, 4, 64, 5.0)):

        def run(intra: float, inter: float, gpus=gpus, nodes=nodes, batch=batch, single=single) -> dict:
            return predict(
                name,
                batch,
                gpus,
                nodes,
                single_gpu_step_ms=single,
                intra_busbw_gbps=intra if gpus > 1 else None,
                inter_busbw_gbps=inter if nodes > 1 else None,
                use=use,
                fitted=fitted,
            )

        intra_sweep = [run(bw, 1.0) for bw in BANDWIDTHS]
        for key in ("step_ms", "interconnect_stall_ms"):
            assert _non_decreasing([r[key] for r in intra_sweep]), (key, gpus, nodes)
        inter_sweep = [run(300.0, bw) for bw in BANDWIDTHS]
        for key in ("step_ms", "network_stall_ms"):
            assert _non_decreasing([r[key] for r in inter_sweep]), (key, gpus, nodes)
        assert all(r["model"]["name"] == use for r in intra_sweep)
        if gpus > 1 and name == "vgg16":  # 553 MB of gradients: a slower link must show
            assert intra_sweep[-1]["step_ms"] > intra_sweep[0]["step_ms"]


def test_monotone_on_random_workloads(fitted):
    """Beyond the zoo: random features, steps and world sizes, every model, both levels."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            "model": "random",
            "batch_per_gpu": rng.integers(1, 256, 200),
            "gpus_per_node": rng.choice([1, 2, 4, 8], 200),
            "nodes": rng.choice([1, 2, 16], 200),
            "single_gpu_step_ms": rng.uniform(0.5, 500, 200),
            "grad_bytes": rng.uniform(1e5, 5e9, 200),
            "num_buckets": rng.integers(1, 200, 200),
            "last_bucket_bytes": rng.uniform(1e4, 1e8, 200),
            "num_grad_tensors": rng.integers(1, 2000, 200),
            "flops_per_sample": rng.uniform(1e6, 1e12, 200),
            "latency_us": 24.2,
            "inter_latency_us": 41.1,
        }
    )
    rows["world_size"] = rows["gpus_per_node"] * rows["nodes"]
    for model in (fitted.models["learned"], fitted.models["baseline"]):
        previous = None
        for bw in BANDWIDTHS:
            out = components(model, rows.assign(intra_busbw_gbps=bw, inter_busbw_gbps=bw / 4))
            assert (out[["interconnect_stall_ms", "network_stall_ms"]] >= 0).all().all()
            if previous is not None:
                assert (out["step_ms"] >= previous["step_ms"] - 1e-9).all()
            previous = out


def test_learned_beats_baseline_leave_one_model_out():
    """The real check on the real data: 120 rows, 20 models, 2 x H200."""
    result = evaluate(dataset.load_dataset())
    assert result["rows"] == 120 and result["models"] == 20
    step, stall = result["targets"]["step_ms"], result["targets"]["interconnect_stall_ms"]
    assert step["learned"]["mape_pct"] < step["baseline"]["mape_pct"]
    assert step["learned"]["mape_pct"] <= TARGET_STEP_MAPE_PCT
    assert step["learned"]["mae_ms"] < step["baseline"]["mae_ms"]
    assert stall["learned"]["mae_ms"] < stall["baseline"]["mae_ms"]
    assert step["learned_beats_baseline"] and stall["learned_beats_baseline"]
    network = result["targets"]["network_stall_ms"]
    assert network["evaluable"] is False and "multi-node" in network["reason"]
    assert result["learned_beats_baseline"] and result["learned_meets_target"]


def test_learned_coefficients_are_non_negative_and_json():
    models = fit_models(dataset.load_dataset())
    data = models["learned"].to_dict()
    assert data["features"] == list(FEATURES)
    assert all(v >= 0 for v in data["coef"].values())
    again = LearnedStallModel.from_dict(json.loads(json.dumps(data)))
    rows = dataset.load_dataset()
    assert np.allclose(components(again, rows), components(models["learned"], rows))
    with pytest.raises(ValueError):
        LearnedStallModel.from_dict({**data, "coef": {**data["coef"], "bandwidth_ms": -1.0}})


def test_fitted_models_are_json_and_refit_when_stale(home, monkeypatch):
    def no_pickle(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    monkeypatch.setattr(registry, "shipped_record", lambda: None)  # the refit path (shipped fit: test_advise)
    first = registry.load_models()
    assert first.refitted and first.path == home / "models" / registry.FILE_NAME
    assert [p.name for p in first.path.parent.iterdir()] == [registry.FILE_NAME]
    raw = first.path.read_bytes()
    assert not raw.startswith(b"\x80") and b"pickle" not in raw
    record = json.loads(raw)
    assert record["stamp"]["ddlprof"] and record["stamp"]["training_sha256"]

    assert registry.load_models().refitted is False  # fresh stamp: read back, not refitted

    record["stamp"]["ddlprof"] = "0.0.0-old"
    first.path.write_text(json.dumps(record))
    again = registry.load_models()
    assert again.refitted and "stale" in again.notes[0]
    assert json.loads(first.path.read_text())["stamp"] == registry.stamp(record["stamp"]["training_sha256"])

    monkeypatch.setattr(registry, "__version__", "99.0")  # a new ddlprof
    assert registry.load_models().refitted
    assert json.loads(first.path.read_text())["stamp"]["ddlprof"] == "99.0"

    first.path.write_text("{not json")
    assert registry.load_models().refitted


def test_a_local_refit_is_read_back_not_refitted_on_every_call(home, monkeypatch):
    """New training rows (a reported run) refit once; the saved fit is then read back, beside the
    shipped fit, whose build script adds keys that a refit lacks."""
    real = registry.training_rows

    def with_a_new_run():
        rows, info = real()
        return rows, {**info, "training_sha256": "0" * 64}

    monkeypatch.setattr(registry, "training_rows", with_a_new_run)
    assert registry.load_models().refitted
    again = registry.load_models()
    assert again.refitted is False and again.record["stamp"]["training_sha256"] == "0" * 64


def test_store_rows_join_the_training_set(monkeypatch):
    """Reported runs join when they carry a single-GPU step; the rest are dropped with a reason,
    and the training hash (hence the version stamp) follows the rows."""
    shipped = dataset.load_dataset()
    usable = shipped.iloc[[0]].assign(model="MyNet", source="reported")
    unusable = shipped.iloc[[1]].assign(model="ResNet", single_gpu_step_ms=None, source="reported")
    on_cpu = shipped.iloc[[2]].assign(model="Sequential", gpu=None, source="reported")  # gloo on CPU
    frame = pd.concat([usable, unusable, on_cpu])
    monkeypatch.setattr(dataset, "store_rows", lambda: (frame, "3 reported run(s)"))
    rows, info = dataset.training_rows()
    assert len(rows) == len(shipped) + 1 and info["store_rows_used"] == 1
    assert info["store_rows_dropped"] == {"no single_gpu_step_ms": 1, "a CPU run (no GPU)": 1}
    assert info["training_sha256"] != info["dataset_sha256"]
    monkeypatch.setattr(dataset, "store_rows", lambda: (None, "no store"))
    assert dataset.training_rows()[1]["training_sha256"] == info["dataset_sha256"]


def test_store_rows_with_infinite_or_negative_figures_are_dropped_not_fitted(monkeypatch):
    """SQLite keeps inf (NaN becomes NULL): a reported row with an infinite single-GPU step stopped
    advise with sklearn's traceback; such rows are dropped with a reason."""
    shipped = dataset.load_dataset()
    infinite = shipped.iloc[[0]].assign(model="A", single_gpu_step_ms=float("inf"), source="reported")
    negative = shipped.iloc[[1]].assign(model="B", grad_bytes=-1, source="reported")
    monkeypatch.setattr(dataset, "store_rows", lambda: (pd.concat([infinite, negative]), "2 reported run(s)"))
    rows, info = dataset.training_rows()
    assert len(rows) == len(shipped) and info["store_rows_used"] == 0
    assert info["store_rows_dropped"] == {"bad single_gpu_step_ms": 1, "bad grad_bytes": 1}
    registry.fit(save=False, training=(rows, info))  # fits: nothing infinite reached it


def test_shipped_dataset_matches_its_provenance():
    prov = dataset.provenance()
    raw = REPO / prov["raw"]["path"]
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == prov["raw"]["sha256"]
    assert dataset.dataset_hash() == prov["sha256"]
    frame = dataset.load_dataset()
    assert len(frame) == 120 and set(frame["world_size"]) == {2} and set(frame["nodes"]) == {1}
    assert (frame["network_stall_ms"] == 0).all() and frame["inter_busbw_gbps"].isna().all()
    stall = frame["step_ms"] - frame["single_gpu_step_ms"]
    assert np.allclose(stall, frame["interconnect_stall_ms"], atol=1e-3)
    assert "OUT=benchmarks/results/gpu-2xh200 bash benchmarks/gpu_dataset.sh" in prov["commands"]
    assert set(prov["features"]["model_heads"]) == {"bert-base", "gpt2"}


def test_predict_outside_the_data_warns_and_bad_input_is_one_line(fitted):
    out = predict("resnet50", 16, 8, 2, gpu="A100-80GB", inter_busbw_gbps=12.5, fitted=fitted)
    text = " ".join(out["warnings"])
    for expected in ("world size 16", "multi-node", "batch per GPU 16", "scaled from H200 to A100-80GB"):
        assert expected in text
    assert out["network_stall_ms"] > 0 and out["inputs"]["sources"]["intra_busbw_gbps"].startswith("assumed")
    same = predict("resnet50", 32, 2, 1, gpu="H200", fitted=fitted)
    assert same["single_gpu_step_ms"] == pytest.approx(18.036)
    with pytest.raises(DdlprofError, match="inter-node bandwidth"):
        predict("resnet50", 32, 8, 2, gpu="H100", fitted=fitted)
    with pytest.raises(DdlprofError, match="intra-node bandwidth"):
        predict("resnet50", 32, 2, 1, single_gpu_step_ms=10.0, fitted=fitted)
    with pytest.raises(DdlprofError, match=r"p5\.48xlarge has 8 x H100"):
        predict("resnet50", 32, 16, 1, instance=load_catalog().instance("p5.48xlarge"), fitted=fitted)


def test_predict_from_an_instance(fitted):
    """The catalog gives the GPU type and, across nodes, the network as the inter-node bandwidth."""
    two = predict("resnet50", 32, 8, 2, instance=load_catalog().instance("p4d.24xlarge"), fitted=fitted)
    assert two["inputs"]["gpu"] == "A100-40GB" and two["inputs"]["instance"] == "p4d.24xlarge"
    assert two["inputs"]["inter_busbw_gbps"] == pytest.approx(400 / 8)  # 400 Gbit/s EFA
    assert "instance catalog" in two["inputs"]["sources"]["inter_busbw_gbps"]
    slow = predict("resnet50", 32, 4, 2, instance=load_catalog().instance("g4dn.12xlarge"), fitted=fitted)
    assert slow["inputs"]["inter_busbw_gbps"] == pytest.approx(50 / 8)
    assert slow["network_stall_ms"] > 0


def test_predict_cli_json(home):
    done = ddlprof(
        "model",
        "predict",
        "--model",
        "vgg16",
        "--batch-per-gpu",
        "32",
        "--gpus-per-node",
        "2",
        "--single-gpu-step-ms",
        "26",
        "--intra-busbw-gbps",
        "28",
        "--json",
        env=_home_env(home),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    for key in ("step_ms", "interconnect_stall_ms", "network_stall_ms", "model", "inputs", "warnings"):
        assert key in result
    assert result["model"]["name"] == "learned" and result["model"]["cv"]["step_ms_mape_pct"] <= 10
    assert result["step_ms"] == pytest.approx(
        result["single_gpu_step_ms"] + result["interconnect_stall_ms"] + result["network_stall_ms"]
    )
    assert (home / "models" / registry.FILE_NAME).is_file()


@pytest.mark.parametrize(
    "args",
    [
        ("--model", "resnet5O", "--single-gpu-step-ms", "20", "--intra-busbw-gbps", "100"),
        ("--model", "resnet50", "--instance", "p5.48xlarge2"),
        ("--model", "resnet50", "--gpu", "H2000"),
    ],
)
def test_predict_bad_input_is_one_line(home, args):
    done = ddlprof(
        "model", "predict", "--batch-per-gpu", "32", "--gpus-per-node", "2", *args, env=_home_env(home)
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    if "resnet5O" in args:
        assert "resnet50" in done.stderr


def test_cli_needs_no_torch(home):
    """`ddlprof model --help` never imports torch; nor do fit, evaluate and predict of a dataset
    model (and predict reads the saved JSON without scikit-learn)."""
    code = """
import contextlib, io, sys
from ddlprof.cli import main
with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):
    main(["model", "--help"])
assert "torch" not in sys.modules, "model --help imported torch"
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["model", "fit", "--json"]) == 0
    assert main(["model", "evaluate", "--json"]) == 0
assert "torch" not in sys.modules, "fit/evaluate imported torch"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=_home_env(home), timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    predict_code = """
import contextlib, io, sys
from ddlprof.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    assert main(["model", "predict", "--model", "gpt2", "--batch-per-gpu", "64", "--gpus-per-node", "2",
                 "--gpu", "H100"]) == 0
print("torch" in sys.modules, "sklearn" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", predict_code], capture_output=True, text=True, env=_home_env(home), timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "False False", done.stderr


def test_evaluate_cli_table(home):
    done = ddlprof("model", "evaluate", env=_home_env(home))
    assert done.returncode == 0, done.stderr
    assert "leave-one-model-out" in done.stdout and "not" in done.stdout.lower()


def test_a_fit_that_cannot_be_saved_says_so_and_is_still_used(home):
    blocked = home / "models" / registry.FILE_NAME
    blocked.mkdir(parents=True)  # a directory where the file should go
    fitted = registry.fit()
    assert fitted.refitted and fitted.models
    assert len(fitted.notes) == 1 and fitted.notes[0].startswith("fitted models not saved")
    assert "cannot write" in fitted.notes[0]
    assert [p.name for p in blocked.parent.iterdir()] == [registry.FILE_NAME]  # no temporary file left
