"""``nmsat train``: N:M sparse training on digits, dense vs sparse side by side, a trace.

The parser imports nothing heavy; torch and scikit-learn are imported by the handler,
which says how to install them when they are missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nmsat.commands import examples, summary
from nmsat.errors import NmsatError
from nmsat.types import NM, Method

# Light: train.py imports torch only inside its functions, so the parser stays torch-free
# and shows TrainConfig's own defaults.
from nmsat.workloads.train import TrainConfig


def _nm(text: str) -> NM:
    try:
        return NM.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _samples(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated iteration numbers like 0,-1, not {text!r}") from None
    if not out:
        raise argparse.ArgumentTypeError("name at least one iteration")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help=summary("train"),
        epilog=examples("nmsat train --model mlp --method bdwp --nm 2:8 --trace t.nmt",
                        "nmsat train --model cnn --method srste --epochs 10 --seed 1"),
        description="Train a small model on scikit-learn's handwritten digits with N:M "
                    "sparse layers (SR-STE or BDWP), report test accuracy next to a dense run "
                    "with the same seed, and write the run as a trace (docs/trace-format.md).")
    d = {f: getattr(TrainConfig, f) for f in ("model", "dataset", "method", "nm", "epochs",
                                               "seed", "batch", "lr", "momentum",
                                               "srste_decay", "threads")}
    p.add_argument("--model", choices=("mlp", "cnn"), default=d["model"],
                   help=f"zoo model to train (default {d['model']})")
    p.add_argument("--dataset", choices=("digits",), default=d["dataset"],
                   help="dataset (digits: 1,797 8x8 images, fixed 80/20 split)")
    p.add_argument("--method", choices=[m.value for m in Method], default=d["method"].value,
                   help=f"training method (default {d['method']})")
    p.add_argument("--nm", type=_nm, default=d["nm"], metavar="N:M",
                   help=f"N:M pattern (default {d['nm']})")
    p.add_argument("--epochs", type=int, default=d["epochs"],
                   help=f"epochs (default {d['epochs']})")
    p.add_argument("--seed", type=int, default=d["seed"],
                   help=f"seed of initialisation and shuffling (default {d['seed']})")
    p.add_argument("--batch", type=int, default=d["batch"],
                   help=f"batch size (default {d['batch']})")
    p.add_argument("--lr", type=float, default=d["lr"],
                   help=f"peak learning rate, cosine-decayed to 0 (default {d['lr']})")
    p.add_argument("--momentum", type=float, default=d["momentum"],
                   help=f"SGD momentum (default {d['momentum']})")
    p.add_argument("--srste-decay", type=float, default=d["srste_decay"], metavar="LAMBDA",
                   help=f"SR-STE decay of pruned weights (default {d['srste_decay']})")
    p.add_argument("--trace", metavar="OUT", help="write the run's trace here (.nmt)")
    p.add_argument("--no-compare", action="store_true",
                   help="skip the dense baseline run (default: run it with the same seed)")
    p.add_argument("--train-limit", type=int, metavar="N",
                   help="use only the first N training samples (quick runs)")
    p.add_argument("--sample-iters", type=_samples, default=(-1,), metavar="LIST",
                   help="iterations whose full tensors go into the trace, comma-separated, "
                        "negative from the end (default -1: the last)")
    p.add_argument("--threads", type=int, default=d["threads"],
                   help="torch intra-op threads (default 1; results are bit-identical for "
                        "the same seed and thread count)")
    p.set_defaults(func=run)


def check_writable(path: str | os.PathLike) -> Path:
    """Fail now, before any training, if the trace cannot be written at ``path``."""
    from nmsat.fileio import check_output_file

    return check_output_file(path, "--trace")


def _need_torch() -> None:
    try:
        import sklearn  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        raise NmsatError(f"nmsat train needs PyTorch and scikit-learn ({e.name} is missing): "
                         "pip install 'nmsat[torch]'") from None


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _fit(cfg, data, label: str):
    """Train ``cfg`` with a tqdm bar and one line per epoch."""
    from tqdm import tqdm

    from nmsat.workloads.train import plan, train

    per_epoch = plan(cfg, len(data.y_train))[0]
    bar = tqdm(total=per_epoch * cfg.epochs, desc=label, unit="it", leave=False,
               disable=None, file=sys.stderr)

    def progress(pr) -> None:
        bar.update(1)
        if pr.epoch_done is not None:
            r = pr.epoch_done
            bar.set_postfix(loss=f"{r.train_loss:.4f}", test=_pct(r.test_accuracy))
            bar.write(f"{label:<10} epoch {r.epoch:>3}/{cfg.epochs}  loss {r.train_loss:.4f}  "
                      f"train {_pct(r.train_accuracy):>7}  test {_pct(r.test_accuracy):>7}",
                      file=sys.stdout)
    try:
        return train(cfg, progress, data)
    finally:
        bar.close()


def run(args: argparse.Namespace) -> int:
    out = check_writable(args.trace) if args.trace else None
    # every flag is checked before torch and scikit-learn are imported (seconds)
    cfg = TrainConfig(model=args.model, dataset=args.dataset, method=args.method, nm=args.nm,
                      epochs=args.epochs, seed=args.seed, batch=args.batch, lr=args.lr,
                      momentum=args.momentum, srste_decay=args.srste_decay,
                      train_limit=args.train_limit, sample_iterations=args.sample_iters,
                      threads=args.threads)
    _need_torch()
    from nmsat.workloads.trace import save_trace
    from nmsat.workloads.train import dense_config, load_dataset, plan, with_baseline

    data = load_dataset(cfg.dataset, cfg.train_limit)
    plan(cfg, len(data.y_train))  # reject an impossible run before printing anything
    label = "dense" if cfg.method is Method.DENSE else f"{cfg.method} {cfg.nm}"
    print(f"training {cfg.model} on {cfg.dataset}: {label}, {cfg.epochs} epochs, batch "
          f"{cfg.batch}, lr {cfg.lr:g}, seed {cfg.seed}")
    trace = _fit(cfg, data, label)
    if cfg.is_sparse and not args.no_compare:  # a dense pattern is its own baseline
        base = _fit(dense_config(cfg), data, "dense")
        trace = with_baseline(trace, base)
    print()
    print(f"test accuracy, {cfg.model} on {cfg.dataset} ({trace.test_size} test images), "
          f"seed {cfg.seed}, {cfg.epochs} epochs:")
    if trace.baseline is not None:
        dense = trace.baseline.final_accuracy
        loss = 100 * (dense - trace.final_accuracy)
        print(f"  {'dense':<12} {_pct(dense):>7}   ({trace.baseline.wall_seconds:.1f} s)")
        print(f"  {label:<12} {_pct(trace.final_accuracy):>7}   ({trace.wall_seconds:.1f} s)  "
              f"accuracy loss {loss:+.2f} pp vs dense")
    else:
        print(f"  {label:<12} {_pct(trace.final_accuracy):>7}   ({trace.wall_seconds:.1f} s)")
    if cfg.is_sparse:
        phases = ("FF", "BP") if cfg.method is Method.BDWP else ("FF",)

        def on(t, ph: str) -> bool:
            return t.sparse_ff if ph == "FF" else t.sparse_bp
        nm_on = [f"{t.name} {ph}" for t in trace.weight_layers for ph in phases if on(t, ph)]
        nm_off = [f"{t.name} {ph}" for t in trace.weight_layers for ph in phases
                  if not on(t, ph)]
        print(f"  N:M phases: {', '.join(nm_on) or 'none'}"
              + (f"; dense (M does not divide the channels): {', '.join(nm_off)}"
                 if nm_off else ""))
    if out is not None:
        save_trace(trace, out)
        print(f"trace written to {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0
