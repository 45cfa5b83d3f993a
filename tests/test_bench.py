"""The benchmarks, run for real on tiny data (training: a few steps, one cell), and their arithmetic.
Never asserts on speed."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rnnlab.bench.flops import fastest_seconds, flops_per_token, matmul_ceiling_gflops, recurrent_step_gflops
from rnnlab.bench.machine import gpu_kind
from rnnlab.bench.report import check_targets
from rnnlab.cells import CELL_NAMES, CELLS, IMPL_NAMES
from rnnlab.data.download import extract_reviews
from rnnlab.run.cpu import apply_training_settings, keep_freed_memory
from tests.helpers.archives import review_members, write_archive
from tests.helpers.project import PROJECT_ROOT, run_module


def test_flops_per_token():
    assert flops_per_token("rnn", 32, 32) == 3 * 2 * 1 * 32 * 64
    assert flops_per_token("lstm", 128, 128) == 4 * flops_per_token("rnn", 128, 128)
    assert flops_per_token("gru", 128, 128) == 3 * flops_per_token("rnn", 128, 128)


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_flops_per_token_is_what_torch_counts(cell):
    """torch's FlopCounterMode on the explicit cells' forward + backward (the matmuls: mm, addmm) agrees with
    the formula but for one product: the first step's state is a constant zero, so its gradient, a
    [B, g*H] x [g*H, H] matmul (g recurrent blocks), is never computed. Per token that is 1 / (3T) * H / (E + H)
    less."""
    B, T, E, H = 4, 50, 24, 40
    torch.manual_seed(0)
    layer = CELLS[cell].layers["explicit"](E, H)
    x = torch.randn(B, T, E, requires_grad=True)  # as the embedding's output, which needs its gradient
    with FlopCounterMode(display=False) as counter:
        layer(x).sum().backward()
    counted = counter.get_total_flops()
    skipped = 2 * B * CELLS[cell].recurrent_blocks * H * H  # none without recurrent blocks (the scan cells)
    assert counted == B * T * flops_per_token(cell, E, H) - skipped
    assert counted / (B * T) == pytest.approx(flops_per_token(cell, E, H), rel=0.02)


def test_fastest_seconds_times_single_warm_calls_with_the_training_threads():
    calls, threads = [], []

    def work() -> None:
        threads.append(torch.get_num_threads())
        calls.append(None)
        time.sleep(0.001 * len(calls))  # every call slower than the one before

    seconds = fastest_seconds(work, repeats=3)
    # torch's Timer.timeit(1): two untimed warm-up calls, then the timed one, per repeat.
    assert len(calls) == 9
    assert set(threads) == {torch.get_num_threads()}  # not the Timer's default of one thread
    assert seconds >= 0.003  # the fastest timed call is the third, never a warm-up


def test_bench_prepare_runs_the_prepare_stage(tmp_path):
    write_archive(tmp_path / "a.tar.gz", review_members())
    extract_reviews(tmp_path / "a.tar.gz", tmp_path / "raw data")  # a space: the Hydra overrides are quoted
    result = run_module("rnnlab.bench.prepare", "--raw", str(tmp_path / "raw data"), "--params",
                        str(PROJECT_ROOT / "params.yaml"), "--repeats", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "prepare of 24 reviews" in result.stdout and "peak memory" in result.stdout
    assert not (tmp_path / "outputs").exists()  # Hydra's run folder went to the temporary folder


def committed_result_as(kind: str) -> dict:
    """The committed AMD result, relabelled as measured on a `kind` machine: a result file to replace or keep."""
    report = json.loads((PROJECT_ROOT / "data" / "bench" / "train-amd.json").read_text())
    report["machine"]["cpu_kind"] = kind
    return report


@pytest.mark.slow
def test_bench_writes_its_figures(prepared_dir, tmp_path):
    from rnnlab.bench.machine import cpu_kind

    results_dir = tmp_path / "bench"
    results_dir.mkdir()
    this_kind, other_kind = cpu_kind(), {"amd": "intel", "intel": "amd"}[cpu_kind()]
    (results_dir / f"train-{this_kind}.json").write_text(json.dumps(committed_result_as(this_kind)))
    other_file = results_dir / f"train-{other_kind}.json"
    other_file.write_text(json.dumps(committed_result_as(other_kind)))
    other_before = other_file.read_bytes()
    # The article setting asks for 10,000 words and batches of 128; the tiny vocabulary has 100 and the
    # training split 8 reviews, hence the overrides: 1 warm-up + 2 timed batches of 2.
    # every implementation the GRU has (the default --impls, each cell running those it has)
    result = run_module("rnnlab.bench", "--cells", "gru", "--settings", "article", "--steps", "2", "--warmup", "1",
                        "--repeats", "1", "--peak-size", "256", "--data-dir", str(prepared_dir), "--results-dir",
                        str(results_dir), "data.vocab_size=null", "data.batch_size=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    # This CPU kind's file replaced, the other kind's untouched
    out = results_dir / f"train-{this_kind}.json"
    assert other_file.read_bytes() == other_before
    assert "gru" in result.stdout and "targets (issues 4 and 14):" in result.stdout
    report = json.loads(out.read_text())
    assert report["commit"] and len(report["results"]) == len(CELLS["gru"].impls)
    # Compared with the result it replaced, row by row (the committed one, at other sizes: ratios far from 1)
    ratios = report["against_previous"]["project_samples_per_s_ratio"]
    assert set(ratios) == {f"gru/article/{impl}" for impl in CELLS["gru"].impls} and all(v > 0 for v in ratios.values())
    assert "against the result this run replaces" in result.stdout
    assert report["sgemm_peak_gflops"] > 0 and report["machine"]["threads"] >= 1
    assert report["sequence_kernel_problem"] is None
    rows = {r["impl"]: r for r in report["results"]}
    assert list(rows) == list(CELLS["gru"].impls)  # a row per implementation, all on the same batches
    r = rows["fused"]
    assert (r["cell"], r["setting"], r["embedding_dim"], r["steps"], r["warmup_steps"]) == ("gru", "article", 32, 2, 1)
    assert set(r["variants"]) == {"project", "plain_padded", "plain_padded_flush", "plain_bucketed",
                                  "plain_bucketed_flush", "plain_project"}
    # Issue 19's targets, PASS/MISS with the figures: the overhead of every implementation, sequence over fused
    cpu_checks = report["cpu_targets"]
    for impl in CELLS["gru"].impls:
        name = f"gru/article/{impl} project over plain_project time, % <= 5"
        assert cpu_checks[name]["value"] == rows[impl]["overhead_pct"]
        verdict = "PASS" if cpu_checks[name]["met"] else "MISS"
        assert f"{verdict} {name}: {rows[impl]['overhead_pct']:.2f}" in result.stdout
    assert "gru/article sequence speed over fused >= 1" in cpu_checks
    for name, v in r["variants"].items():
        assert v["samples"] == 4, name  # every variant trains the same reviews...
        assert v["real_tokens"] == r["variants"]["project"]["real_tokens"] > 0, name  # ...and real tokens
        for key in ("seconds", "samples_per_s", "real_tokens_per_s", "useful_gflops", "peak_pct"):
            assert v[key] > 0, (name, key)
    assert r["variants"]["plain_padded"]["computed_tokens"] == 4 * 500  # padded to the article's max_len
    assert r["speedup"] > 0 and "overhead_pct" in r and r["breakdown"]
    assert r["project_fit"]["deterministic"] is True and r["project_fit"]["fill_uninitialized_memory"] is False
    assert r["project_fit"]["logged_train_samples_per_s"] > 0
    # Same batches, weights and settings: the Lightning path computed what the plain loop computed.
    assert r["project_losses_match_plain"] is True
    assert report["targets"]["gru/article/fused speed-up >= 2.5"]["value"] == r["speedup"]
    for impl in ("explicit", "sequence"):  # the project path and the plain loop with its batches and settings
        assert set(rows[impl]["variants"]) == {"project", "plain_project"}
        assert rows[impl]["project_losses_match_plain"] is True
        assert rows[impl]["variants"]["project"]["real_tokens"] == r["variants"]["project"]["real_tokens"]
        assert rows[impl]["vs_fused"] == pytest.approx(rows[impl]["variants"]["project"]["samples_per_s"]
                                                       / r["variants"]["project"]["samples_per_s"])
    # The same initial weights (explicit.py's initialisation) and batches: the same losses, to rounding.
    assert rows["sequence"]["variants"]["project"]["final_loss"] == pytest.approx(
        rows["explicit"]["variants"]["project"]["final_loss"], abs=1e-5)
    assert "gru/article/sequence speed over the fastest other >= 1" in report["targets"]
    # Which CPU: its model and kind (intel, amd) with every result
    machine = report["machine"]
    assert machine["cpu_kind"] in ("intel", "amd") and machine["cpu_model"] and isinstance(machine["avx512"], bool)
    assert machine["cpu_vendor"] in ("GenuineIntel", "AuthenticAMD") and machine["torch_cpu_capability"]
    assert ("avx512f" in machine["cpu_flags"]) == machine["avx512"]
    assert machine["denormals"]["gemm_denormal_slowdown"] > 0 and machine["denormals"]["flushed"]["gemm_denormal_s"] > 0
    # The layer alone on the timed batches' own shapes: 2 batches of 2, each padded to its own longest review
    for impl, row in rows.items():
        shapes = row["timed_batch_shapes"]
        on_batches = row["layer_on_batches"]
        assert len(shapes) == 2 and all(batch == 2 for batch, _ in shapes), impl
        assert on_batches["padded_tokens"] == sum(b * t for b, t in shapes) >= on_batches["real_tokens"], impl
        assert on_batches["real_tokens"] == row["variants"]["project"]["real_tokens"], impl
        assert on_batches["seconds"] > 0 and on_batches["useful_gflops"] > 0, impl
    assert "the layer alone on the timed batches' own shapes" in result.stdout
    # Where the time goes, four ways, for every implementation: layer@mean, layer@real, plain loop, project
    for impl, row in rows.items():
        batch_size, layer = row["batch_size"], row["layer_only"]
        assert f"  gru   article  {impl:8} layer@mean {batch_size / layer['seconds']:7.1f}/s" in result.stdout
        layer_real = 4 / row["layer_on_batches"]["seconds"]  # 2 timed batches of 2 reviews
        plain, project = row["variants"]["plain_project"], row["variants"]["project"]
        assert (f"layer@real {layer_real:7.1f}/s {row['layer_on_batches']['useful_gflops']:6.1f} "
                f"({row['layer_on_batches']['peak_pct']:4.1f}%)  plain loop {plain['samples_per_s']:7.1f}/s "
                f"{plain['useful_gflops']:6.1f} ({plain['peak_pct']:4.1f}%)  project {project['samples_per_s']:7.1f}/s"
                ) in result.stdout, impl
    assert "gru/article/explicit time over fused's <= 1.5" in report["targets"]
    for row in rows.values():
        ceiling = row["matmul_ceiling"]
        assert ceiling["step_matmul_gflops"] > 0 and 0 < ceiling["ceiling_peak_pct"]
        layer = row["layer_only"]
        assert layer["length"] >= 1 and layer["useful_gflops"] > 0 and layer["project_pct_of_layer"] > 0
    assert "of the ceiling" in result.stdout and "sequence" in result.stdout


def test_every_cell_runs_the_implementations_it_has():
    """The defaults (every recurrent cell, every implementation) ask each cell only for its own: the parallel-scan
    cells have no fused or sequence layer."""
    from rnnlab.bench.__main__ import cell_impls

    assert cell_impls("mingru", list(IMPL_NAMES)) == ["explicit", "scan"]
    assert cell_impls("gru", list(IMPL_NAMES)) == ["fused", "explicit", "sequence"]
    assert all(cell_impls(cell, list(IMPL_NAMES)) == [i for i in IMPL_NAMES if i in CELLS[cell].impls]
               for cell in CELL_NAMES)


def test_a_cell_without_any_asked_implementation_is_refused(tmp_path):
    result = run_module("rnnlab.bench", "--cells", "gru,mingru", "--impls", "fused", "--out", str(tmp_path / "b.json"),
                        cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "b.json").exists()
    assert result.stderr.strip().splitlines()[-1].endswith(
        "error: mingru has none of the implementations fused: it has explicit, scan")


@pytest.mark.slow
def test_bench_runs_a_parallel_scan_cell_with_its_own_implementations(prepared_dir, tmp_path):
    """A smoke run of the benchmark on minGRU with the default implementations: its rows are explicit and scan,
    no step matmul (its gates read x_t only), and no plain-loop variant but plain_project (they run with fused)."""
    out = tmp_path / "bench.json"
    result = run_module("rnnlab.bench", "--cells", "mingru", "--settings", "article", "--steps", "1", "--warmup",
                        "1", "--repeats", "1", "--peak-size", "64", "--data-dir", str(prepared_dir), "--out",
                        str(out), "data.vocab_size=null", "data.batch_size=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["impl"]: r for r in json.loads(out.read_text())["results"]}
    assert list(rows) == ["explicit", "scan"] and all(r["cell"] == "mingru" for r in rows.values())
    for row in rows.values():
        assert set(row["variants"]) == {"project", "plain_project"}
        assert row["matmul_ceiling"]["step_matmul_gflops"] is None and row["matmul_ceiling"]["ceiling_gflops"] > 0
        assert row["layer_only"]["seconds"] > 0
    # the same initial weights and batches: the step reference and the parallel scan train alike
    assert rows["scan"]["variants"]["project"]["final_loss"] == pytest.approx(
        rows["explicit"]["variants"]["project"]["final_loss"], abs=1e-4)
    assert "step matmul   none GFLOP/s" in result.stdout


def test_issue_14_targets():
    def row(cell, setting, impl, samples_per_s, gflops=0.0, peak_pct=0.0):
        project = {"samples_per_s": samples_per_s, "useful_gflops": gflops, "peak_pct": peak_pct}
        return {"cell": cell, "setting": setting, "impl": impl, "variants": {"project": project}}

    checks = check_targets([
        row("rnn", "h128", "fused", 100), row("rnn", "h128", "sequence", 250),
        row("lstm", "h128", "fused", 50, gflops=90, peak_pct=45), row("lstm", "h128", "sequence", 60, peak_pct=49),
        row("gru", "h128", "sequence", 80, gflops=95, peak_pct=42),
        row("gru", "article", "fused", 100), row("gru", "article", "explicit", 50),
        row("gru", "article", "sequence", 90),
    ])
    assert checks["rnn/h128/sequence speed over fused >= 2"] == {"value": 2.5, "met": True}
    assert checks["lstm/h128/sequence % of sgemm peak >= 50"] == {"value": 49, "met": False}
    assert checks["gru/h128/sequence % of sgemm peak >= 40"] == {"value": 42, "met": True}
    assert checks["gru/h128/sequence GFLOP/s over lstm/h128/fused's >= 1"]["value"] == pytest.approx(95 / 90)
    assert checks["gru/article/sequence speed over the fastest other >= 1"] == {"value": 0.9, "met": False}
    assert checks["gru/article/explicit time over fused's <= 1.5"] == {"value": 2.0, "met": False}
    assert checks["lstm/h128/fused % of sgemm peak >= 50"] == {"value": 45, "met": False}  # issue 4's


def test_matmul_ceiling():
    # All matmuls at the peak: the ceiling is the peak. A slow sequential part pulls it down by its share:
    # at E=H with g gates, 4gH^2 of the 12gH^2 FLOPs per token are sequential.
    assert matmul_ceiling_gflops("lstm", 64, 64, peak=100.0, step_rate=100.0) == pytest.approx(100.0)
    assert matmul_ceiling_gflops("lstm", 64, 64, peak=100.0, step_rate=10.0) == pytest.approx(1 / (2 / 300 + 1 / 30))
    assert recurrent_step_gflops(8, 16, 4, steps=10, repeats=2) > 0


def test_training_settings():
    try:
        apply_training_settings()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
        assert torch.tensor([1e-39]).mul(1.0).item() == 0.0  # flushed to zero
        assert keep_freed_memory() is True  # glibc
    finally:
        torch.set_flush_denormal(False)
        torch.utils.deterministic.fill_uninitialized_memory = True


def test_each_committed_result_is_named_after_the_cpu_it_ran_on():
    from rnnlab.bench.__main__ import default_out
    from rnnlab.bench.machine import cpu_kind, cpu_model

    assert cpu_kind() in ("intel", "amd") and cpu_model()  # the two kinds this project's machines have
    assert default_out() == f"data/bench/train-{cpu_kind()}.json"
    committed = sorted((PROJECT_ROOT / "data" / "bench").glob("train-*.json"))
    assert committed
    for path in committed:
        kind = path.stem.removeprefix("train-")
        machine = json.loads(path.read_text())["machine"]
        if kind.startswith("cuda-"):  # a GPU's result, named after its model
            assert gpu_kind(machine["gpu"]["name"]) == kind, (path, machine["gpu"])
        else:
            assert {"intel": "Intel", "amd": "AMD"}[kind] in machine["device"], (path, machine["device"])


def test_a_gpu_result_is_named_after_the_gpu_model():
    from rnnlab.bench.__main__ import default_out

    assert gpu_kind("NVIDIA H100 80GB HBM3") == "cuda-nvidia-h100-80gb-hbm3"
    assert default_out("NVIDIA H200") == "data/bench/train-cuda-nvidia-h200.json"


@pytest.mark.parametrize("args, message", [
    (["--impls", "fused,sequence"], "--device cuda: sequence run on a CPU only"),
    (["--variants", "plain_padded_flush"], "--device cuda: plain_padded_flush run on a CPU only"),
])
def test_bench_cuda_mode_refuses_what_runs_on_a_cpu_only(tmp_path, args, message):
    result = run_module("rnnlab.bench", "--device", "cuda", *args, "--out", str(tmp_path / "b.json"), cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr.splitlines()[-1]
    assert not (tmp_path / "b.json").exists()


def test_bench_cuda_mode_without_a_gpu_says_so_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_module("rnnlab.bench", "--device", "cuda", "--out", str(tmp_path / "b.json"), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == ["bench: error: --device cuda: torch sees no CUDA device here"]
    assert not (tmp_path / "b.json").exists()


def test_issue_19_targets():
    from rnnlab.bench.report import cpu_targets

    def row(cell, setting, impl, samples_per_s, gflops=0.0, peak_pct=0.0, overhead_pct=None):
        project = {"samples_per_s": samples_per_s, "useful_gflops": gflops, "peak_pct": peak_pct}
        r = {"cell": cell, "setting": setting, "impl": impl, "variants": {"project": project}}
        return r if overhead_pct is None else {**r, "overhead_pct": overhead_pct}

    checks = cpu_targets([
        row("lstm", "h128", "fused", 100, gflops=110, peak_pct=55, overhead_pct=29.6),
        row("lstm", "h128", "sequence", 120, gflops=130, peak_pct=65, overhead_pct=4.0),
        row("gru", "h128", "fused", 80, gflops=100, peak_pct=50, overhead_pct=-1.0),
        row("gru", "h128", "sequence", 40, gflops=50, peak_pct=25),
        row("rnn", "article", "fused", 100), row("rnn", "article", "sequence", 210),
    ])
    assert checks["lstm/h128/fused project over plain_project time, % <= 5"] == {"value": 29.6, "met": False}
    assert checks["lstm/h128/sequence project over plain_project time, % <= 5"] == {"value": 4.0, "met": True}
    assert checks["gru/h128/fused project over plain_project time, % <= 5"]["met"] is True
    assert "gru/h128/sequence project over plain_project time, % <= 5" not in checks  # not measured
    assert checks["gru/h128 sequence speed over fused >= 1"] == {"value": 0.5, "met": False}
    assert checks["rnn/article sequence speed over fused >= 1"] == {"value": 2.1, "met": True}
    # The best implementation by GFLOP/s, at E=H=128 only
    assert checks["gru/h128 best impl (fused) % of sgemm peak >= 50"] == {"value": 50, "met": True}
    assert checks["lstm/h128 best impl (sequence) % of sgemm peak >= 50"] == {"value": 65, "met": True}
    assert not any(name.startswith("rnn/article best") for name in checks)
    assert checks["gru/h128 best (fused) GFLOP/s over lstm/h128 best's (sequence) >= 1"] == {
        "value": pytest.approx(100 / 130), "met": False}


def test_a_run_refuses_to_write_over_another_kinds_result(tmp_path):
    from rnnlab.bench.machine import cpu_kind

    other_kind = {"amd": "intel", "intel": "amd"}[cpu_kind()]
    out = tmp_path / "train-mine.json"  # named as this kind's or not: the kind inside decides
    out.write_text(json.dumps(committed_result_as(other_kind)))
    before = out.read_bytes()
    started = time.perf_counter()
    result = run_module("rnnlab.bench", "--out", str(out), cwd=tmp_path)
    assert result.returncode == 1, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [(
        f"bench: error: {out} holds the result of a {other_kind} machine and this is a {cpu_kind()} one: each kind "
        "keeps its own file; choose another --out")]
    assert out.read_bytes() == before
    assert time.perf_counter() - started < 60  # refused before anything was measured


def test_the_readme_table_is_the_committed_results():
    result = run_module("rnnlab.bench.readme_table", "--check", cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr


def test_the_readme_table_sets_the_cpu_kinds_side_by_side(tmp_path):
    from rnnlab.bench.readme_table import BEGIN, END, readme_table

    results_dir = tmp_path / "bench"
    results_dir.mkdir()
    for kind in ("amd", "intel"):
        report = committed_result_as(kind)
        report["machine"]["device"] = f"CPU {kind} model"
        if kind == "intel":  # fewer rows, slower: the table says which CPU each figure came from
            report["results"] = [r for r in report["results"] if r["setting"] == "h128"]
            for r in report["results"]:
                r["variants"]["project"]["samples_per_s"] /= 2
        (results_dir / f"train-{kind}.json").write_text(json.dumps(report))
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{BEGIN}\nstale\n{END}\n\nafter\n")
    result = run_module("rnnlab.bench.readme_table", "--readme", str(readme), "--results-dir", str(results_dir),
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith(f"{END}\n\nafter\n") and "stale" not in text
    lines = readme_table(text).splitlines()
    assert lines[0].startswith("- **amd**: `train-amd.json`, CPU amd model") and lines[1].startswith("- **intel**")
    assert not any("no committed result" in line for line in lines)
    assert "| cell | setting | impl | amd samples/s | amd GFLOP/s (% of peak) | amd vs fused | intel samples/s |" in lines[3]
    assert "| gru | E=H=128 | sequence | 895 | 126.0 (64.8%) | 1.52x | 448 | " in text
    assert "| gru | article | sequence | 5873 | 51.6 (26.5%) | 2.71x | — | — | — |" in text
    check = run_module("rnnlab.bench.readme_table", "--readme", str(readme), "--results-dir", str(results_dir),
                       "--check", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    (results_dir / "train-intel.json").unlink()  # a kind's new result changes the table: --check says so
    check = run_module("rnnlab.bench.readme_table", "--readme", str(readme), "--results-dir", str(results_dir),
                       "--check", cwd=tmp_path)
    assert check.returncode == 1 and check.stderr.startswith("readme_table: error: ")


def test_denormal_cost_is_measured_with_and_without_flush(tmp_path):
    # In a process of its own, as the benchmark calls it: it forks, which a process whose OpenMP threads have
    # started (this one, after the tests before) must not do (variants.in_fresh_process).
    script = "import json; from rnnlab.bench.machine import denormal_cost; print(json.dumps(denormal_cost(size=64)))"
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    cost = json.loads(result.stdout)
    for mode in ("unflushed", "flushed"):
        assert set(cost[mode]) == {"gemm_normal_s", "gemm_denormal_s", "mul_normal_s", "mul_denormal_s"}
        assert all(seconds > 0 for seconds in cost[mode].values()), mode
    assert cost["gemm_denormal_slowdown"] == cost["unflushed"]["gemm_denormal_s"] / cost["unflushed"]["gemm_normal_s"]
