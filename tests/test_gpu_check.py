"""The prepared GPU check on a CPU: scripts/prepare_gpu_check.py builds its folder from a tiny prepared set (and
from nothing, a synthetic set), and scripts/gpu_check.py --device cpu runs every part that needs no MLflow on it,
as on a GPU but at small sizes. Never asserts on speed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rnnlab.data.arrays import PreparedSplit
from rnnlab.data.imdb import IMDBDataModule
from rnnlab.data.sampler import BucketBatchSampler
from tests.helpers.project import PROJECT_ROOT

PREPARE = PROJECT_ROOT / "scripts" / "prepare_gpu_check.py"
CHECK = PROJECT_ROOT / "scripts" / "gpu_check.py"
CHECKED_PARTS = "environment,equality,bf16,epoch_timings,ddp_eval"


def run(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=900)


def one_error_line(done: subprocess.CompletedProcess, command: str) -> str:
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{command}: error: "), done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bundle(prepared_dir: Path, tmp_path_factory) -> Path:
    """The check's folder from the tiny prepared set: 10 reviews at most per split, each cut to 30 tokens."""
    out = tmp_path_factory.mktemp("bundle") / "gpu_check"
    done = run(PREPARE, "--prepared", str(prepared_dir), "--reviews", "10", "--max-len", "30", "--out", str(out),
               cwd=tmp_path_factory.getbasetemp())
    assert done.returncode == 0, done.stderr
    return out


def test_prepare_carries_a_compact_subset_the_sources_and_the_pure_python_packages(bundle, prepared_dir):
    manifest = json.loads((bundle / "manifest.json").read_text())
    data = manifest["data"]
    assert data["source"] == f"subset of {prepared_dir}" and data["max_len"] == 30
    for name in ("train", "val", "test"):
        full = PreparedSplit.load(prepared_dir / name)
        carried = PreparedSplit.load(bundle / "data" / "prepared" / name)
        assert data["splits"][name] == {"reviews": min(10, len(full)), "of_reviews": len(full),
                                        "tokens": int(carried.lengths.sum()), "token_dtype": "uint16"}
        assert carried.tokens.dtype == np.uint16 and carried.lengths.max() <= 30
        # Each carried review is the end of a review of the full split (data.keep=last), with its label.
        ends = {(tuple(np.asarray(full.review(k))[-30:]), int(full.labels[k])) for k in range(len(full))}
        assert all((tuple(carried.review(k)), int(carried.labels[k])) in ends for k in range(len(carried)))
    assert set(manifest["carried_packages"]) == {"hydra", "omegaconf", "antlr4"}
    for package in ("rnnlab", "hydra", "omegaconf", "antlr4"):
        assert (bundle / "python" / package / "__init__.py").is_file()
    assert not list(bundle.rglob("__pycache__")) and not list(bundle.rglob("*.so"))
    assert (bundle / "conf" / "experiment" / "article.yaml").is_file() and (bundle / "gpu_check.py").is_file()
    assert manifest["bytes"] < 10 * 2**20


def test_prepare_without_prepared_data_makes_a_synthetic_set_the_datamodule_reads(tmp_path):
    out = tmp_path / "synthetic"
    done = run(PREPARE, "--synthetic", "--max-len", "40", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["data"]["source"] == "synthetic" and manifest["data"]["vocab_size"] == 10_000
    datamodule = IMDBDataModule(data_dir=str(out / "data" / "prepared"), max_len=500, vocab_size=10_000,
                                batch_size=128)
    datamodule.setup("fit")
    tokens, lengths, labels = next(iter(datamodule.train_dataloader()))
    assert tokens.shape[0] == 128 and int(lengths.max()) <= 40 and set(labels.tolist()) <= {0.0, 1.0}
    assert manifest["data"]["splits"]["train"]["reviews"] == len(datamodule.datasets["train"]) == 640


def test_prepare_refuses_bad_input_with_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "bundle"
    line = one_error_line(run(PREPARE, "--prepared", str(tmp_path / "missing"), "--out", str(out), cwd=tmp_path),
                          "prepare_gpu_check")
    assert "is not a prepared folder" in line and not out.exists()
    line = one_error_line(run(PREPARE, "--synthetic", "--max-mb", "0.5", "--out", str(out), cwd=tmp_path),
                          "prepare_gpu_check")
    assert "over --max-mb 0.5" in line and not out.exists()
    assert list(tmp_path.iterdir()) == []  # no half-built folder left beside it


def test_the_check_on_cpu_runs_every_part_and_reports_what_it_found(bundle, tmp_path):
    done = run(CHECK, "--device", "cpu", "--bundle", str(bundle), "--out", str(tmp_path / "out"),
               "--parts", CHECKED_PARTS, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    parts = report["parts"]
    assert {name: part["status"] for name, part in parts.items()} == {
        "environment": "ok", "equality": "ok", "bf16": "ok", "epoch_timings": "ok", "ddp_eval": "ok",
        "end_to_end": "skipped"}, {name: part.get("error") for name, part in parts.items()}

    environment = parts["environment"]
    # rnnlab and Hydra come from the bundle, as on a GPU image without them.
    assert environment["rnnlab_from"] == str(bundle / "python" / "rnnlab")
    assert environment["hydra_from"] == str(bundle / "python" / "hydra")
    assert environment["bundle"]["data"]["source"].startswith("subset of")
    assert environment["matmul_peaks"]["fp32_tflops"] > 0 and environment["matmul_peaks"]["bf16_tflops"] > 0

    for cell in ("rnn", "lstm", "gru"):
        for precision, bound in (("fp64", 1e-12), ("fp32_tf32_off", 1e-5)):
            case = parts["equality"][cell][precision]
            assert case["equal"] is True
            assert case["max_abs_diff_outputs"] < bound and case["max_abs_diff_grads"] < bound
    assert parts["equality"]["all_equal"] is True

    bf16 = parts["bf16"]
    for cell in ("rnn", "lstm", "gru"):
        assert set(bf16["autocast_bf16_layer_output_dtypes"][cell].values()) <= {"bfloat16", "float16", "float32"}
    assert bf16["fp32"]["recurrent_layer_output_dtypes"] == ["float32"]
    assert bf16["bf16_mixed"]["steps"] == bf16["fp32"]["steps"] == 4
    assert bf16["bf16_mixed"]["losses_finite"] and bf16["fp32"]["losses_finite"]
    assert bf16["bf16_mixed"]["losses"] != bf16["fp32"]["losses"]  # the two precisions did compute differently

    timings = parts["epoch_timings"]
    for impl in ("fused", "explicit"):
        for cell in ("lstm", "gru", "rnn"):
            row = timings[impl][cell]
            assert (row["embedding_dim"], row["hidden_size"], row["max_len"], row["batch_size"]) == (32, 32, 500, 128)
            epoch = row["epochs"][-1]
            assert epoch["samples"] == 8  # the carried train split is one batch: each review counted once
            assert row["samples_per_s"] == pytest.approx(epoch["samples"] / epoch["seconds"])
            assert epoch["real_tokens"] <= epoch["padded_tokens"]
    assert timings["lstm_over_gru_epoch_time"] == pytest.approx(
        timings["fused"]["lstm"]["epoch_seconds"] / timings["fused"]["gru"]["epoch_seconds"])

    ddp = parts["ddp_eval"]
    val = PreparedSplit.load(bundle / "data" / "prepared" / "val")
    assert ddp["world_size"] == 2 and ddp["split_reviews"] == len(val) == ddp["distinct_reviews"]
    # What the two ranks evaluated is what rnnlab's sampler deals them, whatever it does with uneven shares.
    dealt = [sum(len(b) for b in BucketBatchSampler(np.asarray(val.lengths), ddp["eval_batch_size"], shuffle=False,
                                                    num_replicas=2, rank=rank)) for rank in (0, 1)]
    assert ddp["reviews_in_rank_batches"] == dealt
    assert ddp["metrics_match_one_process"] == (ddp["acc_difference"] < 1e-6 and ddp["loss_difference"] < 1e-4)
    assert ddp["each_review_counted_once"] == (ddp["metrics_match_one_process"] and sum(dealt) == len(val))
    assert 0 <= ddp["one_process"]["val_acc"] <= 1


def test_a_failing_part_is_recorded_and_the_others_still_run(bundle, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "data" / "prepared" / "val" / "labels.npy").unlink()
    done = run(CHECK, "--device", "cpu", "--bundle", str(broken), "--out", str(tmp_path / "out"),
               "--parts", "bf16,environment", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parts = json.loads((tmp_path / "out" / "gpu_check.json").read_text())["parts"]
    assert parts["environment"]["status"] == "ok"
    assert parts["bf16"]["status"] == "failed" and "labels.npy" in parts["bf16"]["error"]
    assert parts["equality"] == {"status": "skipped", "reason": "not selected (--parts)"}


def test_parts_past_the_time_budget_are_skipped(bundle, tmp_path):
    done = run(CHECK, "--device", "cpu", "--bundle", str(bundle), "--out", str(tmp_path), "--budget-s", "0.5",
               "--parts", "environment,equality", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    parts = json.loads((tmp_path / "gpu_check.json").read_text())["parts"]
    assert parts["environment"]["status"] == "ok"  # the first part starts at once
    assert parts["equality"] == {"status": "skipped", "reason": "time budget of 0.5 s spent"}


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "--device cuda: torch sees no CUDA device here"),
    (["--device", "cpu", "--bundle", "nowhere"], "manifest.json not found"),
    (["--device", "cpu", "--parts", "environment,speed"], "unknown part speed"),
])
def test_the_check_refuses_with_one_line(tmp_path, args, message):
    import torch

    if args[1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    line = one_error_line(run(CHECK, *args, "--out", str(tmp_path / "out"), cwd=tmp_path), "gpu_check")
    assert message in line
