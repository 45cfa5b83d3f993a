"""One prepared check of rnnlab's GPU paths: a single command, results as JSON, each part on its own.

    python3 scripts/prepare_gpu_check.py                     # here, once: writes build/gpu_check (tens of MB)
    python3 scripts/gpu_check.py --out $OUT                  # on the GPU machine (needs torch, numpy, Lightning)
    python3 scripts/gpu_check.py --device cpu --out build/c   # the same parts on a CPU, at small sizes (tests)

It reads what `prepare_gpu_check.py` put in the bundle (default build/gpu_check): rnnlab's sources and conf/, the
pure-Python packages rnnlab imports that a GPU image lacks (Hydra, OmegaConf), and the prepared IMDB arrays, so the
target needs only torch, numpy, tokenizers, torchmetrics and pytorch_lightning. Parts, in order:

    environment    GPU, driver, torch, CUDA and cuDNN versions; the matmul peak in fp32, TF32 and bf16
    equality       fused vs explicit cells (rnnlab's RecurrentNetwork, 2 layers, bidirectional, padded batches):
                   outputs and every gradient, in fp64 and in fp32 with TF32 off (and, for the record, TF32 on)
    bf16           the dtype cuDNN's recurrent layers run in under torch.autocast(bfloat16), and a short
                   training of rnnlab's model under precision=bf16-mixed beside 32-true
    epoch_timings  LSTM, GRU and RNN at the article setting (experiment=article): epochs through Lightning,
                   synchronized clock reads, samples/s, real tokens/s, useful GFLOP/s; the LSTM/GRU time ratio
    ddp_eval       2 ranks on one device (two processes, 2 nodes x 1 device, gloo): does validation count each
                   review once? (logged val_acc/val_loss against one process's, reviews seen against the split)
    end_to_end     `python -m rnnlab.train trainer=gpu` for a few batches, where Hydra and MLflow import

Every part is guarded: one that fails is recorded with its error and the others still run; parts that would start
after the time budget (--budget-s) are recorded as skipped. <out>/gpu_check.json is rewritten after each part, so
a check stopped half-way keeps what it finished. With --device cpu the sizes are small (a smoke run, not figures).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

PARTS = ("environment", "equality", "bf16", "epoch_timings", "ddp_eval", "end_to_end")
# The bundle this script sits in (prepare_gpu_check.py copies it there), else the one prepared in the project.
HERE = Path(__file__).resolve().parent
DEFAULT_BUNDLE = HERE if (HERE / "manifest.json").is_file() else Path("build/gpu_check")
DEFAULT_BUDGET_S = 420  # the check must end within 8 minutes on one GPU; the rest is the machine's start-up
# Tolerances of fused vs explicit: the two sum the same products in different orders.
TOLERANCES = {"float64": {"rtol": 1e-9, "atol": 1e-11}, "float32": {"rtol": 1e-4, "atol": 1e-6}}
# Sizes per device: a GPU measures the article setting; a CPU only shows that every part runs.
SIZES = {
    "cuda": {"peak_size": 8192, "timed_epochs": 2, "train_batches": None, "explicit_batches": 16, "bf16_steps": 60,
             "ddp_max_len": 128, "e2e_batches": 20},
    "cpu": {"peak_size": 256, "timed_epochs": 1, "train_batches": 3, "explicit_batches": 2, "bf16_steps": 4,
            "ddp_max_len": 32, "e2e_batches": 2},
}


def fail(message: str) -> None:
    print(f"gpu_check: error: {message}", file=sys.stderr)
    sys.exit(1)


def use_bundle(bundle: Path) -> dict:
    """Put the bundle's Python folder first on the import path; its manifest says what it holds."""
    manifest = bundle / "manifest.json"
    if not manifest.is_file():
        fail(f"{manifest} not found: run `python scripts/prepare_gpu_check.py --out {bundle}` first")
    sys.path.insert(0, str((bundle / "python").resolve()))
    return json.loads(manifest.read_text())


def write_json(path: Path, data: dict) -> None:
    """Replace `path` whole: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work before a clock read: CUDA calls return before their kernels end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def tf32(enabled: bool):
    """TF32 on or off for matmuls and cuDNN (torch's defaults: off for matmuls, on for cuDNN), restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def data_dir(bundle: Path) -> str:
    return str((bundle / "data" / "prepared").resolve())


# ---------------------------------------------------------------------------------------------- environment


def nvidia_smi() -> dict | None:
    """The driver's own report (name, driver, memory), or None where nvidia-smi is absent."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,power.limit",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[field.strip() for field in line.split(",")] for line in out.stdout.strip().splitlines()]
    return {"gpus": [dict(zip(("name", "driver_version", "memory_total", "power_limit"), row)) for row in rows]}


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: int, allow_tf32: bool,
                       repeats: int = 10) -> float:
    """TFLOP/s of the fastest of `repeats` [size, size] matmuls, each timed between synchronizations."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    out = torch.empty(size, size, device=device, dtype=dtype)
    seconds = []
    with tf32(allow_tf32):
        for _ in range(repeats + 2):
            synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return 2 * size**3 / min(seconds[2:]) / 1e12  # the first two pick kernels and are not counted


def environment(ctx: dict) -> dict:
    import pytorch_lightning as pl

    import rnnlab

    device = ctx["device"]
    result = {
        "python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "pytorch_lightning": pl.__version__, "numpy": np.__version__, "rnnlab_from": str(Path(rnnlab.__file__).parent),
        "cpu_count": os.cpu_count(), "bundle": ctx["manifest"],
        "tf32_defaults": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32},
    }
    for name in ("hydra", "omegaconf", "mlflow", "tokenizers", "torchmetrics"):
        spec = importlib.util.find_spec(name)
        result[f"{name}_from"] = str(Path(spec.origin).parent) if spec and spec.origin else None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        result["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                         "memory_gib": round(props.total_memory / 2**30, 1),
                         "multiprocessors": props.multi_processor_count, "visible_devices": torch.cuda.device_count(),
                         "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
        result["nvidia_smi"] = nvidia_smi()
    size = ctx["sizes"]["peak_size"]
    peaks = {"matrix_size": size, "fp32_tflops": matmul_peak_tflops(device, torch.float32, size, allow_tf32=False)}
    if device.type == "cuda":
        peaks["tf32_tflops"] = matmul_peak_tflops(device, torch.float32, size, allow_tf32=True)
    peaks["bf16_tflops"] = matmul_peak_tflops(device, torch.bfloat16, size, allow_tf32=False)
    result["matmul_peaks"] = peaks
    ctx["peaks"] = peaks
    return result


# -------------------------------------------------------------------------------------------------- equality


def padded_batch(device: torch.device, batch: int = 8, length: int = 40, vocab: int = 50, seed: int = 0):
    """Token ids [B, T] padded after each review's end, lengths [B] (one review uses all T), labels [B]."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, length + 1, (batch,), generator=generator)
    lengths[0] = length
    tokens = torch.randint(2, vocab, (batch, length), generator=generator)
    tokens[torch.arange(length)[None, :] >= lengths[:, None]] = 0  # PAD_ID
    labels = torch.randint(0, 2, (batch,), generator=generator).float()
    return tokens.to(device), lengths.to(device), labels.to(device)


def fused_vs_explicit(cell: str, dtype: torch.dtype, device: torch.device) -> dict:
    """rnnlab's network with fused and with explicit cells, the same weights: max differences in the outputs and
    in every parameter's gradient, and whether they agree within TOLERANCES."""
    from rnnlab.models.network import RecurrentNetwork

    settings = dict(cell=cell, embedding_dim=8, hidden_size=12, num_layers=2, bidirectional=True, vocab_size=50)
    torch.manual_seed(0)
    fused = RecurrentNetwork(impl="fused", **settings)
    explicit = RecurrentNetwork(impl="explicit", **settings)
    # A fused module is one layer: its parameters carry the suffix _l0, the explicit cells' do not.
    explicit.load_state_dict({name.removesuffix("_l0"): value for name, value in fused.state_dict().items()})
    tokens, lengths, labels = padded_batch(device)
    outputs, grads = {}, {}
    for name, net in (("fused", fused), ("explicit", explicit)):
        net.to(device=device, dtype=dtype)
        logits = net(tokens, lengths)
        torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.to(dtype)).backward()
        outputs[name] = logits.detach()
        grads[name] = {k.removesuffix("_l0"): p.grad for k, p in net.named_parameters()}
    tol = TOLERANCES[str(dtype).removeprefix("torch.")]
    pairs = [("outputs", outputs["fused"], outputs["explicit"])]
    pairs += [(f"grad {k}", grads["fused"][k], grads["explicit"][k]) for k in grads["explicit"]]
    worst = {name: float((a - b).abs().max()) for name, a, b in pairs}
    return {"equal": all(torch.allclose(a, b, **tol) for _, a, b in pairs), "tolerance": tol,
            "max_abs_diff_outputs": worst["outputs"],
            "max_abs_diff_grads": max(v for k, v in worst.items() if k != "outputs"),
            "worst_grad": max((k for k in worst if k != "outputs"), key=worst.get)}


def equality(ctx: dict) -> dict:
    device = ctx["device"]
    result = {}
    for cell in ("rnn", "lstm", "gru"):
        with tf32(False):
            result[cell] = {"fp64": fused_vs_explicit(cell, torch.float64, device),
                            "fp32_tf32_off": fused_vs_explicit(cell, torch.float32, device)}
        if device.type == "cuda":  # cuDNN's default: recorded, not judged (TF32 keeps 10 mantissa bits)
            with tf32(True):
                result[cell]["fp32_tf32_on_informational"] = fused_vs_explicit(cell, torch.float32, device)
    result["all_equal"] = all(result[c][k]["equal"] for c in ("rnn", "lstm", "gru") for k in ("fp64", "fp32_tf32_off"))
    return result


# ------------------------------------------------------------------------------------------------------ bf16


def layer_output_dtype(output) -> str:
    """The dtype of a fused layer's output, a tensor or a PackedSequence (what the encoder passes on CUDA)."""
    first = output[0]
    return str(getattr(first, "data", first).dtype).removeprefix("torch.")


def autocast_dtypes(device: torch.device) -> dict:
    """What nn.RNN/LSTM/GRU return under autocast(bfloat16), padded and packed, from float32 inputs and weights."""
    from torch.nn.utils.rnn import pack_padded_sequence

    result = {}
    for name, layer_type in (("rnn", torch.nn.RNN), ("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)):
        layer = layer_type(16, 16, batch_first=True).to(device)
        x = torch.randn(4, 10, 16, device=device)
        lengths = torch.tensor([10, 7, 5, 2])
        with torch.autocast(device.type, dtype=torch.bfloat16):
            padded = layer(x)
            packed = layer(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        result[name] = {"padded": layer_output_dtype(padded), "packed": layer_output_dtype(packed)}
    return result


ARTICLE_VOCAB = 10_000  # experiment=article's data.vocab_size


def article_config(cell: str, ctx: dict, overrides: list[str] = ()):
    """experiment=article for `cell`, composed from the bundle's conf/ (the project's one source of settings); on a
    prepared set with a smaller vocabulary (a test's), its whole vocabulary."""
    from rnnlab.composition import compose_config

    vocab = ["data.vocab_size=null"] if ctx["manifest"]["data"]["vocab_size"] < ARTICLE_VOCAB else []
    return compose_config([f"model={cell}", "experiment=article", f"paths.prepared_dir={data_dir(ctx['bundle'])}",
                           *vocab, *overrides])


def build_run(cfg):
    """The datamodule and RecurrentModule the config describes, as rnnlab.train builds them."""
    from rnnlab.cli import build

    datamodule = build(cfg.data, "data")
    module = build(cfg.model, "model", task=datamodule.task, **datamodule.network_inputs)
    return datamodule, module


def plain_trainer(ctx: dict, callbacks: list, **settings):
    """A Lightning Trainer on the checked device with rnnlab's training settings, without logger or checkpoints."""
    import pytorch_lightning as pl

    accelerator = "gpu" if ctx["device"].type == "cuda" else "cpu"
    return pl.Trainer(accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      use_distributed_sampler=False, callbacks=callbacks, **settings)


def short_training(ctx: dict, precision: str, steps: int) -> dict:
    """`steps` batches of the LSTM at the article setting under `precision`: losses, the recurrent layer's output
    dtype as training saw it, and the recurrent weights' gradient norm after the first backward."""
    import pytorch_lightning as pl

    class Probe(pl.Callback):
        def __init__(self) -> None:
            self.losses, self.layer_dtypes, self.first_grad_norm = [], set(), None

        def on_fit_start(self, trainer, module) -> None:
            layer = module.net.encoder.layers[0][0]
            layer.register_forward_hook(lambda _m, _i, output: self.layer_dtypes.add(
                layer_output_dtype(output) if isinstance(output, tuple)
                else str(output.dtype).removeprefix("torch.")))  # the one-layer contract returns the states

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            self.losses.append(float(outputs["loss"]))

        def on_after_backward(self, trainer, module) -> None:
            if self.first_grad_norm is None:
                grads = [p.grad.float().norm() for n, p in module.net.encoder.named_parameters()
                         if "weight_hh" in n and p.grad is not None]
                self.first_grad_norm = float(torch.stack(grads).norm()) if grads else None

    cfg = article_config("lstm", ctx)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build_run(cfg)
    probe = Probe()
    trainer = plain_trainer(ctx, [probe], precision=precision, max_steps=steps, limit_val_batches=0,
                            gradient_clip_val=cfg.trainer.gradient_clip_val)
    trainer.fit(module, datamodule=datamodule)
    losses = probe.losses
    return {"steps": len(losses), "first_loss": losses[0], "last_loss": losses[-1],
            "mean_last_5": float(np.mean(losses[-5:])), "losses_finite": bool(np.isfinite(losses).all()),
            "recurrent_layer_output_dtypes": sorted(probe.layer_dtypes),
            "first_weight_hh_grad_norm": probe.first_grad_norm, "losses": [round(x, 5) for x in losses]}


def bf16(ctx: dict) -> dict:
    steps = ctx["sizes"]["bf16_steps"]
    mixed, full = short_training(ctx, "bf16-mixed", steps), short_training(ctx, "32-true", steps)
    return {"autocast_bf16_layer_output_dtypes": autocast_dtypes(ctx["device"]),
            "bf16_mixed": mixed, "fp32": full,
            "max_loss_difference": max(abs(a - b) for a, b in zip(mixed["losses"], full["losses"])),
            "trains_under_bf16_mixed": mixed["losses_finite"] and mixed["mean_last_5"] < mixed["first_loss"]}


# --------------------------------------------------------------------------------------------- epoch timings


def timed_epochs(ctx: dict, cell: str, impl: str, epochs: int, batches: int | None) -> dict:
    """Train `epochs` epochs through Lightning (experiment=article, the config's clipping) and time each epoch's
    training batches, synchronizing before every clock read. Each review counts once: one process, one device."""
    import pytorch_lightning as pl

    from rnnlab.bench.flops import flops_per_token

    device = ctx["device"]

    class EpochClock(pl.Callback):
        def __init__(self) -> None:
            self.epochs = []

        def on_train_epoch_start(self, trainer, module) -> None:
            self.batches = []
            synchronize(device)
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            tokens, lengths, _ = batch  # kept, and read once the clock has stopped: no wait for the GPU meanwhile
            self.batches.append((tokens.numel(), lengths))

        def on_train_epoch_end(self, trainer, module) -> None:
            synchronize(device)
            seconds = time.perf_counter() - self.start
            self.epochs.append({"seconds": seconds, "samples": sum(len(lengths) for _, lengths in self.batches),
                                "real_tokens": sum(int(lengths.sum()) for _, lengths in self.batches),
                                "padded_tokens": sum(padded for padded, _ in self.batches)})

    cfg = article_config(cell, ctx, [f"model.impl={impl}"])
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule, module = build_run(cfg)
    clock = EpochClock()
    trainer = plain_trainer(ctx, [clock], precision="32-true", max_epochs=epochs, limit_val_batches=0,
                            limit_train_batches=batches if batches else 1.0,
                            gradient_clip_val=cfg.trainer.gradient_clip_val)
    trainer.fit(module, datamodule=datamodule)
    E, H = cfg.model.embedding_dim, cfg.model.hidden_size
    last = clock.epochs[-1]  # the warm one: the first also loads kernels and plans
    useful_gflops = last["real_tokens"] * flops_per_token(cell, E, H) / last["seconds"] / 1e9
    peaks = ctx.get("peaks") or {}
    reference = peaks.get("tf32_tflops") or peaks.get("fp32_tflops")  # cuDNN runs TF32 unless told not to
    return {"impl": impl, "embedding_dim": E, "hidden_size": H, "max_len": cfg.data.max_len,
            "batch_size": cfg.data.batch_size, "vocab_size": datamodule.vocab_size, "epochs": clock.epochs,
            "epoch_seconds": last["seconds"], "samples_per_s": last["samples"] / last["seconds"],
            "real_tokens_per_s": last["real_tokens"] / last["seconds"], "useful_gflops": useful_gflops,
            "peak_pct": 100 * useful_gflops / (reference * 1e3) if reference else None,
            "whole_epoch": batches is None}


def epoch_timings(ctx: dict) -> dict:
    sizes = ctx["sizes"]
    result = {"cudnn_tf32": torch.backends.cudnn.allow_tf32, "fused": {}, "explicit": {}}
    for cell in ("lstm", "gru", "rnn"):
        result["fused"][cell] = timed_epochs(ctx, cell, "fused", sizes["timed_epochs"], sizes["train_batches"])
        ctx["checkpoint"](result)
    for cell in ("lstm", "gru", "rnn"):  # the readable cells, a few batches: their speed, not an epoch
        if ctx["budget_left"]() < 60:
            result["explicit"][cell] = {"status": "skipped", "reason": "time budget"}
            continue
        result["explicit"][cell] = timed_epochs(ctx, cell, "explicit", 1, sizes["explicit_batches"])
        ctx["checkpoint"](result)
    fused = result["fused"]
    result["lstm_over_gru_epoch_time"] = fused["lstm"]["epoch_seconds"] / fused["gru"]["epoch_seconds"]
    return result


# -------------------------------------------------------------------------------------------------- ddp_eval


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def odd_batch_size(reviews: int, start: int = 64) -> int:
    """An evaluation batch size that cuts the split into an odd number of batches: 2 ranks cannot share them
    evenly, which is where a sampler that pads ranks with repeated batches counts reviews twice."""
    size = start
    while -(-reviews // size) % 2 == 0:
        size += 1
    return size


def ddp_model(ctx: dict, max_len: int):
    """The config of the evaluated model: the LSTM, small, on reviews cut to max_len; eval batches uneven."""
    from rnnlab.data.arrays import PreparedSplit

    reviews = len(PreparedSplit.load(Path(data_dir(ctx["bundle"])) / "val").lengths)
    return article_config("lstm", ctx, [
        f"data.max_len={max_len}", f"data.eval_batch_size={odd_batch_size(reviews)}", "model.embedding_dim=16",
        "model.hidden_size=16"]), reviews


def one_process_evaluation(module, datamodule, device: torch.device) -> dict:
    """Accuracy and mean loss over every validation review once, with no sampler: the reference."""
    from rnnlab.data.imdb import collate

    dataset = datamodule.datasets["val"]
    correct, loss_sum, n = 0, 0.0, len(dataset)
    net = module.net.to(device).eval()
    with torch.no_grad():
        for start in range(0, n, 256):
            tokens, lengths, labels = collate([dataset[k] for k in range(start, min(n, start + 256))])
            logits = net(tokens.to(device), lengths.to(device))
            labels = labels.to(device)
            correct += int(((logits > 0).float() == labels).sum())
            loss_sum += float(torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum"))
    return {"val_acc": correct / n, "val_loss": loss_sum / n}


def ddp_worker(spec_path: str) -> None:
    """One rank of ddp_eval, run as its own process (`--ddp-worker spec.json`); writes what it evaluated."""
    spec = json.loads(Path(spec_path).read_text())
    bundle = Path(spec["bundle"])
    manifest = use_bundle(bundle)
    quiet_lightning()
    from pytorch_lightning.plugins.environments import LightningEnvironment
    from pytorch_lightning.strategies import DDPStrategy

    ctx = {"bundle": bundle, "manifest": manifest, "device": torch.device(spec["device"])}
    cfg, _ = ddp_model(ctx, spec["max_len"])
    datamodule, module = build_run(cfg)
    module.load_state_dict(torch.load(spec["weights"], weights_only=True))
    strategy = DDPStrategy(process_group_backend="gloo", cluster_environment=LightningEnvironment())
    trainer = plain_trainer(ctx, [], precision="32-true", num_nodes=2, strategy=strategy)
    with tf32(False):
        metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    reviews = [k for batch in trainer.val_dataloaders.batch_sampler for k in batch]
    peak = torch.cuda.max_memory_allocated() / 2**20 if ctx["device"].type == "cuda" else None
    write_json(Path(spec["result"]), {"rank": trainer.global_rank, "world_size": trainer.world_size,
                                      "val_acc": metrics["val_acc"], "val_loss": metrics["val_loss"],
                                      "reviews": reviews, "peak_allocated_mib": peak})


def ddp_eval(ctx: dict) -> dict:
    import pytorch_lightning as pl

    device = ctx["device"]
    max_len = ctx["sizes"]["ddp_max_len"]
    cfg, reviews = ddp_model(ctx, max_len)
    pl.seed_everything(cfg.seed, verbose=False)
    datamodule, module = build_run(cfg)
    datamodule.setup("validate")
    with tempfile.TemporaryDirectory(prefix="gpu-check-ddp-") as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.save(module.state_dict(), weights)
        with tf32(False):
            reference = one_process_evaluation(module, datamodule, device)
        port, ranks, processes = free_port(), [], []
        for rank in range(2):
            spec = {"bundle": str(ctx["bundle"]), "device": device.type, "max_len": max_len, "weights": str(weights),
                    "result": str(Path(tmp) / f"rank{rank}.json")}
            Path(tmp, f"spec{rank}.json").write_text(json.dumps(spec))
            env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(rank),
                   "LOCAL_RANK": "0", "WORLD_SIZE": "2"}
            log = open(Path(tmp) / f"rank{rank}.log", "w")
            command = [sys.executable, __file__, "--ddp-worker", str(Path(tmp, f"spec{rank}.json"))]
            processes.append((subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT), log))
        deadline = time.monotonic() + max(30.0, min(240.0, ctx["budget_left"]()))
        for process, log in processes:
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
        for rank, (process, _) in enumerate(processes):
            if process.returncode != 0:
                tail = Path(tmp, f"rank{rank}.log").read_text()[-2000:]
                raise RuntimeError(f"rank {rank} exited with {process.returncode}: {tail}")
            ranks.append(json.loads(Path(tmp, f"rank{rank}.json").read_text()))
    seen = [k for r in ranks for k in r["reviews"]]
    logged = ranks[0]
    result = {
        "world_size": logged["world_size"], "split_reviews": reviews, "eval_batch_size": cfg.data.eval_batch_size,
        "reviews_in_rank_batches": [len(r["reviews"]) for r in ranks], "reviews_in_batches": len(seen),
        "distinct_reviews": len(set(seen)), "logged": {"val_acc": logged["val_acc"], "val_loss": logged["val_loss"]},
        "one_process": reference, "rank_peak_allocated_mib": [r["peak_allocated_mib"] for r in ranks],
        "acc_difference": abs(logged["val_acc"] - reference["val_acc"]),
        "loss_difference": abs(logged["val_loss"] - reference["val_loss"]),
    }
    # A sampler that pads the ranks with repeats weighted 0 would show matching metrics with more reviews in the
    # batches than the split holds: then metrics_match_one_process is the verdict that counts.
    result["metrics_match_one_process"] = result["acc_difference"] < 1e-6 and result["loss_difference"] < 1e-4
    result["each_review_counted_once"] = (result["metrics_match_one_process"] and len(seen) == reviews
                                          and len(set(seen)) == reviews)
    return result


# ------------------------------------------------------------------------------------------------ end_to_end


def end_to_end(ctx: dict) -> dict:
    missing = [name for name in ("hydra", "mlflow") if importlib.util.find_spec(name) is None]
    if missing:
        return {"status": "skipped", "reason": f"{' and '.join(missing)} not importable here"}
    trainer = "gpu" if ctx["device"].type == "cuda" else "default"
    batches = ctx["sizes"]["e2e_batches"]
    with tempfile.TemporaryDirectory(prefix="gpu-check-train-") as tmp:
        command = [sys.executable, "-m", "rnnlab.train", f"trainer={trainer}", "experiment=article", "resume=never",
                   f"paths.prepared_dir={data_dir(ctx['bundle'])}", f"logger.tracking_uri=sqlite:///{tmp}/mlflow.db",
                   f"paths.checkpoint_dir={tmp}/checkpoints", f"hydra.run.dir={tmp}/hydra", "trainer.max_epochs=1",
                   f"++trainer.limit_train_batches={batches}", f"++trainer.limit_val_batches={batches}",
                   f"++trainer.limit_test_batches={batches}", "callbacks.progress_bar=null",
                   "++trainer.enable_progress_bar=false"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp,
                              timeout=max(30.0, ctx["budget_left"]()))
    result = {"command": " ".join(command[1:]), "returncode": done.returncode,
              "seconds": time.perf_counter() - start, "stderr_tail": done.stderr[-3000:]}
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [""]
        result.update(status="failed", error=f"rnnlab.train exited with {done.returncode}: {last[0]}")
    return result


# ------------------------------------------------------------------------------------------------------ main


def quiet_lightning() -> None:
    """Lightning's INFO lines (devices found, tips) for every Trainer would bury the check's own."""
    import logging

    for name in ("pytorch_lightning", "lightning_fabric", "lightning.pytorch"):
        logging.getLogger(name).setLevel(logging.WARNING)


def memory_peaks(device: torch.device) -> dict | None:
    if device.type != "cuda":
        return None
    return {"allocated_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            "reserved_mib": round(torch.cuda.max_memory_reserved(device) / 2**20, 1)}


def run_parts(ctx: dict, parts: list[str], out: Path) -> dict:
    started = time.perf_counter()
    report = {"device": str(ctx["device"]), "budget_s": ctx["budget_s"], "parts": {}}
    ctx["budget_left"] = lambda: ctx["budget_s"] - (time.perf_counter() - started)
    functions = {"environment": environment, "equality": equality, "bf16": bf16, "epoch_timings": epoch_timings,
                 "ddp_eval": ddp_eval, "end_to_end": end_to_end}
    for name in PARTS:
        if name not in parts or ctx["budget_left"]() <= 0:
            reason = "not selected (--parts)" if name not in parts else f"time budget of {ctx['budget_s']:g} s spent"
            report["parts"][name] = {"status": "skipped", "reason": reason}
            write_json(out / "gpu_check.json", report)
            continue
        print(f"gpu_check: {name} ...", file=sys.stderr, flush=True)
        part_start = time.perf_counter()

        def checkpoint(partial: dict, name=name) -> None:  # a long part's results so far, kept if it is stopped
            report["parts"][name] = {"status": "running", **partial}
            write_json(out / "gpu_check.json", report)

        ctx["checkpoint"] = checkpoint
        if ctx["device"].type == "cuda":
            torch.cuda.reset_peak_memory_stats(ctx["device"])
        try:
            result = functions[name](ctx)
            entry = {"status": result.pop("status", "ok"), **result}
        except Exception as e:  # one part's failure is its result; the others still run
            entry = {"status": "failed", "error": f"{type(e).__name__}: {e}",
                     "traceback": traceback.format_exc()[-4000:]}
        entry["seconds"] = round(time.perf_counter() - part_start, 2)
        entry["memory_peaks"] = memory_peaks(ctx["device"])
        report["parts"][name] = entry
        report["wall_seconds"] = round(time.perf_counter() - started, 2)
        write_json(out / "gpu_check.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_check.json (default: $OUT)")
    parser.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="what prepare_gpu_check.py wrote")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S,
                        help="no part starts after this many seconds")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    parser.add_argument("--ddp-worker", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ddp_worker:
        ddp_worker(args.ddp_worker)
        return 0
    parts = [p for p in args.parts.split(",") if p]
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        fail(f"unknown part {', '.join(unknown)}: choose from {', '.join(PARTS)}")
    if not args.out:
        fail("no output folder: give --out or set $OUT")
    if args.budget_s <= 0:
        fail(f"--budget-s must be positive, got {args.budget_s:g}")
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: torch sees no CUDA device here (use --device cpu for the small CPU run)")
    bundle = Path(args.bundle).resolve()
    manifest = use_bundle(bundle)
    quiet_lightning()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda:0" if args.device == "cuda" else "cpu")
    ctx = {"device": device, "bundle": bundle, "manifest": manifest, "sizes": SIZES[args.device],
           "budget_s": args.budget_s}
    report = run_parts(ctx, parts, out)
    statuses = {name: part["status"] for name, part in report["parts"].items()}
    print(f"gpu_check: wrote {out / 'gpu_check.json'} ({report.get('wall_seconds', 0):.0f} s): {statuses}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
