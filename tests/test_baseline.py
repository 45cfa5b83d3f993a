"""The floor without recurrence (the bag of embeddings), parameter counts, and the parameter-matched setting.

- the bag trains through the real command (`python -m rnnlab.train model=bag`) on tiny data and is refused, in
  one line, under an implementation that is not its own;
- it flows through compare as the pipeline plans it (`pipeline.baselines`): a row in the table, extra rows in
  the claims report, never a claim's subject;
- the recurrent parameter count is the models' own, in every implementation; the matched hidden sizes give
  equal counts within one hidden unit's worth.
"""

from __future__ import annotations

import json

import pytest
import torch
from matplotlib.colors import to_hex

from rnnlab.cells import BASELINE_NAMES, CELL_NAMES, CELLS, IMPLEMENTATIONS
from rnnlab.composition import compose_config
from rnnlab.models.network import RecurrentNetwork
from rnnlab.parameters import matched_hidden_size, recurrent_parameters, with_matched_model
from rnnlab.pipeline import planned_runs
from rnnlab.train import train
from tests.helpers.project import PROJECT_ROOT, run_module
from tests.helpers.training import compose_tiny, runs, tiny_overrides
from tests.test_compare import SEEDS, claims, run_command, run_compare, table_rows, write_run, write_runs

VOCAB, E = 50, 8


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameter counts

@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
@pytest.mark.parametrize("cell, impl", [(cell, impl) for cell in CELL_NAMES for impl in CELLS[cell].impls])
def test_the_recurrent_count_is_the_models_own(cell, impl, layers, bidirectional):
    net = RecurrentNetwork(cell=cell, impl=impl, vocab_size=VOCAB, embedding_dim=E, hidden_size=6,
                           num_layers=layers, bidirectional=bidirectional)
    assert recurrent_parameters(cell, E, 6, layers, bidirectional) == count(net.encoder)
    directions = 2 if bidirectional else 1
    assert count(net) == VOCAB * E + count(net.encoder) + directions * 6 + 1  # embedding, encoder, output layer


def test_the_bag_has_no_recurrent_parameters():
    net = RecurrentNetwork(cell="bag", impl="plain", vocab_size=VOCAB, embedding_dim=E, hidden_size=6)
    assert net.encoder is None and recurrent_parameters("bag", E, 6) == 0
    assert count(net) == VOCAB * E + E + 1  # the embedding and the output layer, nothing else


def test_the_bag_is_the_mean_of_the_real_tokens_embeddings():
    net = RecurrentNetwork(cell="bag", impl="plain", vocab_size=VOCAB, embedding_dim=E)
    tokens = torch.tensor([[5, 6, 7, 0, 0], [9, 0, 0, 0, 0]])
    lengths = torch.tensor([3, 1])
    with torch.no_grad():
        net.embedding.weight[0] = 1.0  # a padding row that counted would show
        expected = net.decoder(torch.stack([net.embedding.weight[[5, 6, 7]].mean(0), net.embedding.weight[9]]))
        assert torch.allclose(net(tokens, lengths), expected.squeeze(-1))


# The parameter-matched setting

@pytest.mark.parametrize("embedding", [16, 64, 128])
@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("reference", CELL_NAMES)
def test_matched_sizes_give_equal_counts_within_one_hidden_unit(cell, reference, embedding):
    for reference_hidden in (32, 64, 100):
        target = recurrent_parameters(reference, embedding, reference_hidden)
        h = matched_hidden_size(cell, embedding, target)
        size = recurrent_parameters(cell, embedding, h)
        one_unit = recurrent_parameters(cell, embedding, h + 1) - size
        assert abs(size - target) <= one_unit
        # and it is the nearest: neither neighbour is closer
        assert abs(size - target) <= abs(recurrent_parameters(cell, embedding, h + 1) - target)
        assert h == 1 or abs(size - target) <= abs(recurrent_parameters(cell, embedding, h - 1) - target)
        if cell == reference:
            assert h == reference_hidden


def test_matched_sizes_hold_for_stacked_and_bidirectional_layers():
    target = recurrent_parameters("lstm", 32, 48, num_layers=2, bidirectional=True)
    for cell in CELL_NAMES:
        h = matched_hidden_size(cell, 32, target, num_layers=2, bidirectional=True)
        size = recurrent_parameters(cell, 32, h, 2, True)
        assert abs(size - target) <= recurrent_parameters(cell, 32, h + 1, 2, True) - size


def test_experiment_matched_gives_each_cell_the_lstms_count():
    sizes = {}
    for cell in CELL_NAMES:
        model = with_matched_model(compose_config(["experiment=matched", f"model.cell={cell}"])).model
        sizes[cell] = model.hidden_size
        target = recurrent_parameters("lstm", model.embedding_dim, 64)
        size = recurrent_parameters(cell, model.embedding_dim, model.hidden_size)
        assert abs(size - target) <= recurrent_parameters(cell, model.embedding_dim, model.hidden_size + 1) - size
    assert {cell: sizes[cell] for cell in ("rnn", "lstm", "gru")} == {"rnn": 152, "lstm": 64, "gru": 77}  # as
    # conf/experiment/matched.yaml says
    bag = with_matched_model(compose_config(["experiment=matched", "model=bag"])).model
    assert bag.hidden_size == compose_config([]).model.hidden_size  # nothing to match


def test_a_matched_run_records_its_solved_hidden_size(prepared_dir, tmp_path):
    result = train(compose_tiny(prepared_dir, tmp_path, "experiment=matched", "model=gru",
                                "model.match.hidden_size=8", f"export_dir={tmp_path}/export"))
    h = matched_hidden_size("gru", E, recurrent_parameters("lstm", E, 8))
    assert h != 8  # the tiny config's own hidden size: the solved one replaced it
    [run] = runs(tmp_path)
    assert run.data.params["model.hidden_size"] == str(h) and run.data.params["model.match.cell"] == "lstm"
    vocabulary = json.loads((prepared_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert result.metrics["n_params"] == len(vocabulary) * E + recurrent_parameters("gru", E, h) + h + 1
    assert f"hidden_size: {h}" in (tmp_path / "export" / "config.yaml").read_text()


# The bag through the real command

def test_the_bag_trains_through_the_training_command(prepared_dir, tmp_path):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), "model=bag",
                        f"export_dir={tmp_path}/export", f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [run] = runs(tmp_path)
    assert run.info.status == "FINISHED" and run.info.run_name == "bag-plain-seed0"
    assert run.data.tags["cell"] == "bag" and run.data.tags["impl"] == "plain"
    metrics = json.loads((tmp_path / "export" / "metrics.json").read_text())
    vocabulary = json.loads((prepared_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert (metrics["cell"], metrics["impl"], metrics["epochs"]) == ("bag", "plain", 2)
    assert metrics["n_params"] == len(vocabulary) * E + E + 1 and 0 <= metrics["test_acc"] <= 1


@pytest.mark.parametrize("overrides, message", [
    (["model.cell=bag"], "train: error: model: impl='fused' does not apply to cell 'bag' (it has no recurrence): "
                         "choose plain"),
    (["model=lstm", "model.impl=plain"], "train: error: model: impl='plain' does not apply to cell 'lstm' (a "
                                         "recurrent cell): choose fused | explicit | sequence"),
    (["experiment=matched", "model.match.cell=bag"], "train: error: model.match: model.match.cell='bag' is unknown"),
])
def test_an_implementation_a_cell_has_not_is_one_line(prepared_dir, tmp_path, overrides, message):
    result = run_module("rnnlab.train", *tiny_overrides(prepared_dir, tmp_path), *overrides,
                        f"hydra.run.dir={tmp_path}/out", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip().splitlines()[-1]]
    assert result.stderr.strip().startswith(message), result.stderr[-2000:]
    assert runs(tmp_path) == []


# The pipeline and compare

def test_the_pipeline_plans_a_baseline_once_per_seed():
    pipeline = compose_config(["pipeline.baselines=[bag]", "pipeline.seeds=[0,1]"]).pipeline
    planned = [run.name for run in planned_runs(pipeline)]
    assert [name for name in planned if name.startswith("bag")] == ["bag-plain-0", "bag-plain-1"]
    assert len(planned) == len(pipeline.cells) * len(pipeline.impls) * 2 + 2
    assert BASELINE_NAMES == ("bag",) and not CELLS["bag"].recurrent


@pytest.mark.parametrize("overrides, message", [
    (["pipeline.cells=[rnn,bag]"], "pipeline.cells lists bag, which has no recurrence (one implementation, plain): "
                                   "list it in pipeline.baselines"),
    (["pipeline.baselines=[gru]"], "pipeline.baselines lists gru, a recurrent cell: list it in pipeline.cells"),
    (["pipeline.impls=[plain]"], "pipeline.impls='plain' is unknown: choose fused | explicit | sequence | scan"),
])
def test_a_cell_in_the_wrong_list_is_one_line(tmp_path, overrides, message):
    result = run_command(tmp_path, *overrides)
    assert result.returncode == 1 and result.stderr.strip() == f"compare: error: {message}"


FIGURES = {"rnn": ([0.750, 0.760, 0.755], [50, 52, 51]), "lstm": ([0.870, 0.871, 0.872], [200, 210, 204]),
           "gru": ([0.871, 0.870, 0.872], [100, 104, 103])}
BAG = ([0.861, 0.859, 0.860], [20, 21, 22])


def test_the_bag_appears_in_compares_outputs(tmp_path):
    pipeline = write_runs(tmp_path / "train", "fused", FIGURES)
    for seed, accuracy, time in zip(SEEDS, *BAG):
        write_run(tmp_path / "train", "bag", "plain", seed, accuracy, time)
    table = run_compare(tmp_path, *pipeline, "pipeline.baselines=[bag]")
    rows = {row[0]: row for row in table_rows(table)}
    assert list(rows) == ["rnn", "lstm", "gru", "bag"]
    assert rows["bag"][:3] == ["bag", "plain", "3"] and rows["bag"][5] == "0.8600 ± 0.0010"
    assert rows["rnn"][7] == "1.00x" and rows["bag"][7] == f"{21 / 51:.2f}x"  # against the fastest cell
    e, h = compose_config([]).model.embedding_dim, compose_config([]).model.hidden_size
    assert rows["bag"][-2] == "0"  # recurrent parameters
    for cell in FIGURES:  # the cells this pipeline trained
        assert rows[cell][-2] == f"{recurrent_parameters(cell, e, h):,}"
    assert "12 runs: 9 = 3 cells x 1 impls x 3 seeds" in table and "3 without recurrence, once per seed" in table
    out = tmp_path / "compare"
    judged = claims(out)
    assert list(judged) == ["fused"]  # the claims are about the recurrent cells only
    assert judged["fused"]["a_rnn_fastest_least_accurate"]["verdict"] == "holds"  # the bag, faster, changes nothing
    text = (out / "claims.md").read_text()
    assert "| bag (no recurrence, impl plain) | 3 | 0.8600 [" in text
    assert json.loads((out / "claims.json").read_text())["baselines"]["bag"]["seeds"] == [0, 1, 2]
    assert json.loads((out / "scores.json").read_text())["bag-plain"] == {"test_acc": 0.86, "fit_time_s": 21.0,
                                                                         "failure_rate": 0.0, "unstable": 0}
    assert "bag-plain-0,bag,plain,0,20.0,0.861" in (out / "accuracy_vs_time.csv").read_text()
    assert "1,bag," in (out / "learning_curves.csv").read_text()


def test_a_matched_pipeline_is_checked_against_each_cells_solved_size(tmp_path):
    """Runs trained with experiment=matched carry the solved hidden size; compare expects exactly that."""
    solved = {cell: with_matched_model(compose_config(["experiment=matched", f"model={cell}"])).model.hidden_size
              for cell in FIGURES}
    for cell, (accuracies, times) in FIGURES.items():
        for seed, accuracy, time in zip(SEEDS, accuracies, times):
            write_run(tmp_path / "train", cell, "fused", seed, accuracy, time, "experiment=matched",
                      f"model.hidden_size={solved[cell]}")
    pipeline = ["pipeline.cells=[rnn,lstm,gru]", "pipeline.impls=[fused]", "pipeline.seeds=[0,1,2]",
                "pipeline.baselines=[]", "experiment=matched"]
    table = run_compare(tmp_path, *pipeline)
    rows = {row[0]: row for row in table_rows(table)}
    counts = {cell: int(rows[cell][-2].replace(",", "")) for cell in FIGURES}
    assert counts["lstm"] == 33280 and all(abs(n - 33280) < 400 for n in counts.values())
    assert "as many recurrent parameters as the lstm at hidden 64: rnn 152, lstm 64, gru 77." in table
    # a run trained at the shared hidden size is not a matched run
    (tmp_path / "train" / "gru-fused-1" / "config.yaml").unlink()
    write_run(tmp_path / "other", "gru", "fused", 1, 0.87, 100, "experiment=matched")
    (tmp_path / "other" / "gru-fused-1" / "config.yaml").rename(tmp_path / "train" / "gru-fused-1" / "config.yaml")
    result = run_command(tmp_path, *pipeline)
    assert result.returncode == 1
    assert "was trained with model.hidden_size=64; the pipeline now says 77" in result.stderr


def test_the_dvc_plot_templates_colour_every_cell_as_the_figures_do():
    """`dvc plots show` draws with .dvc/plots/ templates: their cell colours are rnnlab.cells' (the PNGs'), written
    by `python -m rnnlab.comparison.plot_templates` (run it after adding a cell)."""
    for name in ("cells_linear.json", "cells_scatter.json"):
        template = json.loads((PROJECT_ROOT / ".dvc" / "plots" / name).read_text())
        scale = template["encoding"]["color"]["scale"]
        assert scale["domain"] == list(CELLS) and scale["range"] == [to_hex(cell.colour) for cell in CELLS.values()]
    shapes = json.loads((PROJECT_ROOT / ".dvc" / "plots" / "cells_scatter.json").read_text())["encoding"]["shape"]
    assert shapes["scale"]["domain"] == list(IMPLEMENTATIONS)
