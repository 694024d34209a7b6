"""``asfe3d train``: train an ASFE-Fusion network from a YAML configuration (see ``docs/training.md``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from asfe3d.errors import Asfe3dInputError, InputErrorParser

__all__ = ["build_parser", "load_config", "main"]



def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``asfe3d train`` (no heavy imports); its usage mistakes raise
    :class:`~asfe3d.errors.Asfe3dInputError`."""
    p = InputErrorParser(prog="asfe3d train", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="YAML training configuration (configs/train_*.yaml)")
    p.add_argument("--data", default=None, help="data: the HMIF root or task folder (data.source hmif), the SPM12 folder or one holding spm12/ and "
                        "individual/ (wholehead), your pairs CSV: subject, mri, pet (pairs); overrides data.path")
    p.add_argument("--out", default=None, help="run folder for last.pt, best.pt, log.csv, loss.png; overrides out")
    p.add_argument("--epochs", type=int, default=None, help="total epochs; overrides train.epochs")
    p.add_argument("--steps-per-epoch", type=int, default=None, help="overrides train.steps_per_epoch")
    p.add_argument("--resume", action="store_true",
                   help="continue from <out>/last.pt with the same settings (only --epochs, --device, --threads, "
                        "--data may change); without it, a run folder holding last.pt, best.pt, log.csv or loss.png "
                        "is refused")
    p.add_argument("--device", default=None, help="auto | cpu | cuda[:N]; overrides train.device")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads; overrides train.num_threads")
    return p


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML configuration.

    Args:
        path: the YAML file.

    Returns:
        The mapping it holds.

    Raises:
        Asfe3dInputError: the file is missing, not YAML, or not a mapping.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise Asfe3dInputError(path, "config file not found")
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:  # PyYAML's text is several lines, with a caret: the problem and where, on one
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise Asfe3dInputError(path, f"not valid YAML ({problem}{where})") from None
    if not isinstance(cfg, dict):
        raise Asfe3dInputError(path, f"config must be a mapping, got {type(cfg).__name__}")
    return cfg


def _kept(out: object) -> str:
    """What an interrupted run left in its folder ``out``: the finished epochs in ``last.pt`` (resumable)."""
    import torch

    last = Path(str(out or "runs/train")) / "last.pt"
    try:
        epoch = int(torch.load(last, map_location="cpu", weights_only=False)["epoch"])
    except Exception:  # noqa: BLE001 - no (readable) checkpoint: no finished epoch
        return f"no epoch had finished: nothing to resume in {last.parent}"
    return (f"{last} holds the {epoch} finished epoch(s) and best.pt their best (the epoch under way is lost): "
            "continue with --resume")


def main(argv: list[str] | None = None) -> int:
    """Run ``asfe3d train``.

    Args:
        argv: arguments after ``train`` (``None`` = ``sys.argv[1:]``).

    Returns:
        0 on success, 2 on bad input or configuration, 1 when the training diverged (one line on stderr each).
    """
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2
    from asfe3d.errors import ConfigError, Terminated

    cfg: dict | None = None
    try:
        cfg = load_config(args.config)  # the file first: a missing one is refused before torch is imported
        for section in ("data", "train"):  # the options below write into these sections
            if cfg.get(section) is None:  # ``train:`` alone is null in YAML: no settings
                cfg.pop(section, None)
            elif not isinstance(cfg[section], dict):
                raise ConfigError(f"{section} must be a mapping of settings (key: value lines), got {cfg[section]!r}")
        if args.data is not None:
            if cfg.get("data", {}).get("source") == "simulated":
                raise Asfe3dInputError("--data", f"{args.config} has data.source 'simulated', which reads no data "
                                                 "folder (its pairs are simulated from the MNI template): leave --data out")
            cfg.setdefault("data", {})["path"] = args.data
        if args.out is not None:
            cfg["out"] = args.out
        for attr, key in (("epochs", "epochs"), ("steps_per_epoch", "steps_per_epoch"), ("device", "device"),
                          ("threads", "num_threads")):
            if getattr(args, attr) is not None:
                cfg.setdefault("train", {})[key] = getattr(args, attr)
        import shlex

        command = "asfe3d train " + shlex.join(sys.argv[1:] if argv is None else argv)
        from asfe3d.training.engine import train

        result = train(cfg, resume=args.resume, command=command)
    except Asfe3dInputError as exc:
        print(f"asfe3d: error: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a bad configuration value: name the file it came from (any other error is a bug)
        print(f"asfe3d: error: {args.config}: {exc}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Terminated) as exc:  # the finished epochs are kept: say so, not "nothing kept"
        code = 143 if isinstance(exc, Terminated) else 130
        print(f"asfe3d: {'terminated' if code == 143 else 'interrupted'}; {_kept(cfg.get('out') if cfg else None)}",
              file=sys.stderr)
        return code
    except FloatingPointError as exc:  # the loss became NaN/inf: the configuration's step is too large
        print(f"asfe3d: error: {args.config}: training diverged ({exc}); lower train.lr or set train.grad_clip "
              "(last.pt keeps the last finished epoch)", file=sys.stderr)
        return 1
    print(f"done: {result.epochs_run} epochs, best epoch {result.best_epoch} (val loss {result.best_val_loss:.4f}), "
          f"final train {result.final_train_loss:.4f} / val {result.final_val_loss:.4f}, {result.seconds:.0f} s; "
          f"weights: {result.best_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
