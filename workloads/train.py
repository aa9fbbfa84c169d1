"""Sparse training runs on a real offline dataset, recorded as a trace.

:func:`train` trains ``mlp`` or ``cnn`` (:mod:`nmsat.workloads.sparse_torch`) on
scikit-learn's handwritten digits with dense, SR-STE or BDWP N:M training and returns the
run as a :class:`nmsat.workloads.trace.Trace`: layer shapes, per-iteration per-layer mask
and sparsity statistics, the accuracy curve, and the full tensors of sampled iterations.

Numerics: the run trains in fp32 (fp32 master weights, fp32 GEMMs: a CPU has no fast
fp16). The masks are selected from the fp16 working copy of the weights, as the SORE
does, so the trace's masks are exactly those the accelerator would generate from the
trace's fp16 weights. The engine itself would multiply fp16 operands with fp32
accumulation; the trace stores fp16 copies of every operand it would use
(``docs/training.md``, ``docs/trace-format.md``).

Determinism: the same :class:`TrainConfig` gives bit-identical numbers. The run seeds
torch, shuffles with its own generator, enables torch's deterministic algorithms and
fixes the intra-op thread count (``threads``), restoring the global settings afterwards.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nmsat import __version__
from nmsat.types import DEFAULT_NM, NM, Method

from .layers import Layer, Phase
from .trace import STAT_NAMES, Baseline, EpochRecord, LayerTensors, Sample, Trace, TraceLayer

__all__ = ["DATASETS", "DEFAULT_NM", "MAX_EPOCHS", "MAX_THREADS", "SPLIT_SEED", "TEST_FRACTION",
           "TRAINABLE_MODELS", "Dataset", "Progress", "TrainConfig", "dense_config",
           "load_dataset", "model_layers", "plan", "train", "with_baseline"]

DATASETS = ("digits",)
TRAINABLE_MODELS = ("mlp", "cnn")
SPLIT_SEED = 0
"""Seed of the fixed train/test split (independent of the run's ``seed``)."""
TEST_FRACTION = 0.2


MAX_EPOCHS = 10_000
"""Most epochs a run may ask for: the per-iteration statistics are held in memory
(6 x iterations x weight layers x 4 B), and 10,000 digits epochs are ~450,000 iterations
(~30 MiB of statistics for the mlp, about a day of CPU): far past any useful run, far
below what would exhaust memory. A larger ``--epochs`` is refused before training."""

MAX_THREADS = 1024
"""Most torch intra-op threads a run may ask for (torch itself accepts any count)."""


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``sample_iterations`` lists iterations whose full tensors go
    into the trace (negative counts from the end: ``-1`` is the last).

    ``lr`` is the peak of a per-iteration cosine decay. BDWP 2:8 on ``cnn`` collapsed to
    chance at 0.05 (seed 1) and 0.1 (seed 0), and trained on seeds 0-4 at 0.03 and 0.02;
    the default 0.02 keeps a margin (BDWP's BP weights differ from FF's, so its gradient
    is biased; docs/training.md).
    """

    model: str = "mlp"
    dataset: str = "digits"
    method: Method = Method.BDWP
    nm: NM = DEFAULT_NM
    epochs: int = 30
    seed: int = 0
    batch: int = 32
    lr: float = 0.02
    momentum: float = 0.9
    srste_decay: float = 2e-4
    train_limit: int | None = None
    sample_iterations: tuple[int, ...] = (-1,)
    threads: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "method", Method.parse(self.method))
        object.__setattr__(self, "nm", NM.parse(self.nm))
        object.__setattr__(self, "sample_iterations", tuple(self.sample_iterations))
        if self.model not in TRAINABLE_MODELS:
            raise ValueError(f"unknown model {self.model!r} for training "
                             f"(choose from {', '.join(TRAINABLE_MODELS)})")
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r} (choose from "
                             f"{', '.join(DATASETS)})")
        for name, hi in (("epochs", MAX_EPOCHS), ("batch", None), ("threads", MAX_THREADS)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
            if hi is not None and v > hi:
                raise ValueError(f"{name} must be at most {hi:,}, not {v:,}")
        if not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer from 0 to 2**63 - 1, not {self.seed!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, not {self.lr!r}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), not {self.momentum!r}")
        if not (math.isfinite(self.srste_decay) and self.srste_decay >= 0):
            raise ValueError(f"srste_decay must be >= 0, not {self.srste_decay!r}")
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"train_limit must be a positive integer, not {self.train_limit!r}")
        if not self.sample_iterations:
            raise ValueError("sample_iterations must name at least one iteration")

    @property
    def is_sparse(self) -> bool:
        return self.method is not Method.DENSE and not self.nm.dense


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Dataset:
    """A fixed train/test split as float32 features in [0, 1] and int64 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(name: str, train_limit: int | None = None) -> Dataset:
    """Load ``digits`` (1,797 8x8 images, 10 classes) with the fixed seeded 80/20 split.

    The split is a permutation from ``SPLIT_SEED``, independent of the training seed, so
    every run evaluates on the same 359 test images. ``train_limit`` keeps the first
    that many training samples (for quick runs and tests).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)  # pixels are 0..16
    y = d.target.astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    n_test = round(len(y) * TEST_FRACTION)
    te, tr = order[:n_test], order[n_test:]
    if train_limit is not None:
        tr = tr[:train_limit]
    return Dataset(name, x[tr], y[tr], x[te], y[te])


# --------------------------------------------------------------------------- layers


def model_layers(name: str, model) -> tuple[Layer, ...]:
    """The zoo's typed per-sample layers of ``name``, checked against the torch model.

    The zoo (:mod:`nmsat.workloads.zoo`) is the one statement of the shapes; the torch
    model must have a weight module of the same name and weight shape for each of its
    weight layers, and no other weight modules.
    """
    from .sparse_torch import sparse_modules
    from .zoo import get

    layers = get(name, batch=1).layers
    mods = dict(sparse_modules(model))
    zoo_w = {layer.name: layer.weight_shape for layer in layers if layer.has_weights}
    torch_w = {n: tuple(m.weight.shape) for n, m in mods.items()}
    if zoo_w != torch_w:
        raise AssertionError(f"{name}: torch weight layers {torch_w} differ from the zoo's "
                             f"{zoo_w}")
    return tuple(layers)


def _trace_layers(layers: tuple[Layer, ...], cfg: TrainConfig, model) -> tuple[TraceLayer, ...]:
    from .sparse_torch import sparse_modules

    mods = dict(sparse_modules(model))
    out = []
    for layer in layers:
        if layer.has_weights:
            m = mods[layer.name]
            sff, sbp = m.sparse_ff, m.sparse_bp
            # The simulator decides per-layer sparsity with Layer.nm_applies; what we
            # trained must be exactly that.
            if (sff, sbp) != (layer.nm_applies(Phase.FF, cfg.method, cfg.nm),
                              layer.nm_applies(Phase.BP, cfg.method, cfg.nm)):
                raise AssertionError(f"{layer.name}: trained sparsity disagrees with "
                                     "Layer.nm_applies")
        else:
            sff = sbp = False
        out.append(TraceLayer(layer, cfg.method, cfg.nm, sff, sbp))
    return tuple(out)


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class Progress:
    """What :func:`train` reports after every iteration (``epoch_done`` set at epoch ends)."""

    epoch: int
    iteration: int
    iterations_per_epoch: int
    loss: float
    epoch_done: EpochRecord | None = None


def _resolve_samples(spec: tuple[int, ...], total: int) -> tuple[int, ...]:
    out = set()
    for i in spec:
        j = i + total if i < 0 else i
        if not 0 <= j < total:
            raise ValueError(f"sample iteration {i} is outside the run's {total} iterations")
        out.add(j)
    return tuple(sorted(out))


def plan(cfg: TrainConfig, n_train: int) -> tuple[int, int, tuple[int, ...]]:
    """(iterations per epoch, total iterations, sampled iterations) of a run on
    ``n_train`` samples; raises ``ValueError`` if the run is impossible."""
    if cfg.batch > n_train:
        raise ValueError(f"batch {cfg.batch} is larger than the training set ({n_train})")
    # drop_last: every iteration has the configured batch, so every iteration's GEMMs
    # are the ones the trace's layers state; reshuffling each epoch still uses all data.
    per_epoch = n_train // cfg.batch
    total = per_epoch * cfg.epochs
    return per_epoch, total, _resolve_samples(cfg.sample_iterations, total)


def train(cfg: TrainConfig, progress: Callable[[Progress], None] | None = None,
          dataset: Dataset | None = None) -> Trace:
    """Run one training and return its trace (no baseline; see :func:`with_baseline`).

    Raises ``ValueError`` on an impossible setting (batch larger than the training set,
    a sample iteration outside the run, divergence to NaN).
    """
    import torch
    import torch.nn.functional as F

    from .sparse_torch import EngineSGD, build_model, sparse_modules

    data = dataset if dataset is not None else load_dataset(cfg.dataset, cfg.train_limit)
    n_train = len(data.y_train)
    per_epoch, total, sampled = plan(cfg, n_train)

    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(cfg.threads)
    torch.use_deterministic_algorithms(True)
    t0 = time.perf_counter()
    try:
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = build_model(cfg.model, cfg.method, cfg.nm, cfg.srste_decay)
        in_shape = type(model).input_shape
        layers = model_layers(cfg.model, model)
        tlayers = _trace_layers(layers, cfg, model)
        mods = sparse_modules(model)
        for _, m in mods:
            m.capture = True
        # The weight update rounds exactly as the accelerator's weight-update engine.
        opt = EngineSGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
        # Cosine decay to 0 over the run, stepped per iteration: a smooth end makes the
        # final accuracy (the dense vs sparse comparison) less noisy than a constant rate.
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
        xtr = torch.from_numpy(data.x_train).reshape((-1,) + in_shape)
        ytr = torch.from_numpy(data.y_train)
        xte = torch.from_numpy(data.x_test).reshape((-1,) + in_shape)
        yte = torch.from_numpy(data.y_test)

        nl = len(mods)
        stats = {k: np.full((total, nl), np.nan, np.float32) for k in STAT_NAMES}
        losses = np.zeros(total, np.float32)
        prev: list[tuple | None] = [None] * nl
        samples: list[Sample] = []
        curve: list[EpochRecord] = []
        it = 0
        for epoch in range(cfg.epochs):
            perm = torch.randperm(n_train, generator=gen)
            correct = 0
            for b in range(per_epoch):
                idx = perm[b * cfg.batch:(b + 1) * cfg.batch]
                xb, yb = xtr[idx], ytr[idx]
                try:
                    out = model(xb)
                except ValueError as e:
                    raise ValueError(f"iteration {it}: {e}") from None
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                lv = loss.item()
                if not math.isfinite(lv):
                    raise ValueError(f"training diverged at iteration {it} (loss {lv}); "
                                     "lower --lr")
                losses[it] = lv
                correct += int((out.argmax(1) == yb).sum())
                _record_stats(stats, it, mods, prev)
                if it in sampled:
                    samples.append(_sample(it, epoch, mods, opt))
                opt.step()
                sched.step()
                if progress is not None and b < per_epoch - 1:
                    progress(Progress(epoch, it, per_epoch, lv))
                it += 1
            with torch.no_grad():
                acc = int((model(xte).argmax(1) == yte).sum()) / len(yte)
            rec = EpochRecord(epoch=epoch + 1,
                              train_loss=float(losses[it - per_epoch:it].mean()),
                              train_accuracy=correct / (per_epoch * cfg.batch),
                              test_accuracy=acc)
            curve.append(rec)
            if progress is not None:
                progress(Progress(epoch, it - 1, per_epoch, float(losses[it - 1]), rec))
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
    wall = time.perf_counter() - t0
    return Trace(
        version=Trace.VERSION, tool_version=__version__, torch_version=torch.__version__,
        model=cfg.model, dataset=cfg.dataset, method=cfg.method, nm=cfg.nm, seed=cfg.seed,
        split_seed=SPLIT_SEED, epochs=cfg.epochs, batch=cfg.batch, lr=cfg.lr,
        momentum=cfg.momentum, srste_decay=cfg.srste_decay, train_size=n_train,
        test_size=len(data.y_test), threads=cfg.threads, wall_seconds=wall, layers=tlayers,
        loss=losses, stats=stats, accuracy=tuple(curve), baseline=None,
        samples=tuple(samples))


def _record_stats(stats: dict[str, np.ndarray], it: int, mods, prev: list) -> None:
    """Fill row ``it`` of every statistic from what the modules saw this iteration;
    ``prev`` holds each layer's masks of the previous iteration (updated here)."""
    import torch

    with torch.no_grad():
        for j, (_, m) in enumerate(mods):
            ff, bp = m.ff_mask, m.bp_mask
            stats["ff_density"][it, j] = ff.float().mean()
            stats["bp_density"][it, j] = bp.float().mean()
            if prev[j] is not None:  # iteration 0 keeps NaN: nothing to compare with
                stats["ff_flip"][it, j] = (ff != prev[j][0]).float().mean()
                stats["bp_flip"][it, j] = (bp != prev[j][1]).float().mean()
            prev[j] = (ff, bp)
            stats["act_zero"][it, j] = (m.last_input == 0).float().mean()
            stats["grad_zero"][it, j] = (m.last_grad_output == 0).float().mean()


def _sample(it: int, epoch: int, mods, opt) -> Sample:
    """Copy every weight layer's tensors of iteration ``it`` (after backward, before the
    weight update): the operands of its FF, BP and WG GEMMs and of its weight update."""
    import torch

    tensors = {}
    for name, m in mods:
        w = m.weight.detach()
        st = opt.state.get(m.weight, {})
        vel = st.get("momentum_buffer")
        vel = torch.zeros_like(w) if vel is None else vel
        w16 = w.to(torch.float16)
        tensors[name] = LayerTensors(
            w_master=w.numpy().copy(),
            bias=m.bias.detach().numpy().copy(),
            velocity=vel.detach().numpy().copy(),
            w_fp16=w16.numpy().copy(),
            ff_mask=m.ff_mask.numpy().copy(),
            bp_mask=m.bp_mask.numpy().copy(),
            w_ff=torch.where(m.ff_mask, w16, 0.0).numpy().copy(),
            w_bp=torch.where(m.bp_mask, w16, 0.0).numpy().copy(),
            x=m.last_input.numpy().copy(),
            x_fp16=m.last_input.to(torch.float16).numpy().copy(),
            dy=m.last_grad_output.numpy().copy(),
            dy_fp16=m.last_grad_output.to(torch.float16).numpy().copy(),
            dw=m.weight.grad.detach().numpy().copy(),
        )
    return Sample(iteration=it, epoch=epoch + 1, lr=float(opt.param_groups[0]["lr"]),
                  layers=tensors)


def with_baseline(trace: Trace, baseline: Trace) -> Trace:
    """``trace`` with the dense run ``baseline`` (same model, data, seed) recorded in it."""
    if baseline.method is not Method.DENSE:
        raise ValueError(f"the baseline must be a dense run, not {baseline.method}")
    for f in ("model", "dataset", "seed", "epochs", "batch", "train_size"):
        if getattr(trace, f) != getattr(baseline, f):
            raise ValueError(f"baseline differs from the run in {f}: "
                             f"{getattr(baseline, f)!r} vs {getattr(trace, f)!r}")
    return dataclasses.replace(trace, baseline=Baseline(
        method=Method.DENSE, accuracy=baseline.accuracy, wall_seconds=baseline.wall_seconds))


def dense_config(cfg: TrainConfig) -> TrainConfig:
    """The dense baseline of a run: same everything, method dense."""
    return dataclasses.replace(cfg, method=Method.DENSE)
