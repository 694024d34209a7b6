"""Fusion metrics of a network and of the classic baselines on HMIF pairs (the 2D acceptance check).

``python -m asfe3d.training.evaluate --data /path/to/hmif [--weights best.pt]`` prints, on the validation part
of :func:`asfe3d.data.hmif.split_pairs`, the mean of the 11 metrics for each classic baseline (and the network),
and for the network, on how many metrics it beats each baseline.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["BASELINES", "evaluate_fuser", "compare_to_baselines", "main"]

#: classic methods the learned one is compared with, one at a time
BASELINES = ("mean", "max", "wavelet", "laplacian")


def evaluate_fuser(
    fuse: Callable[[np.ndarray, np.ndarray], np.ndarray],
    images: Sequence[tuple[np.ndarray, np.ndarray]],
    names: Sequence[str] | None = None,
) -> dict[str, float]:
    """Mean fusion metrics of one fusion function over image pairs.

    Args:
        fuse: ``fuse(mri, other)`` with ``(H, W)`` float arrays in ``[0, 1]``, returning ``(H, W)`` in ``[0, 1]``.
        images: ``(mri, other)`` pairs, ``(H, W)`` float32 in ``[0, 1]``.
        names: metric names (default all 11 of :data:`asfe3d.metrics.METRIC_NAMES`).

    Returns:
        ``{metric: mean over the pairs}``.

    Raises:
        ValueError: no pairs.
    """
    from asfe3d.metrics import fusion_metrics

    if len(images) == 0:
        raise ValueError("evaluate_fuser needs at least one image pair, got 0")
    rows = []
    for mri, other in images:
        fused = np.clip(np.asarray(fuse(mri, other), dtype=np.float32), 0.0, 1.0)
        rows.append(fusion_metrics(fused, mri, other, names=names))
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def compare_to_baselines(
    candidate: dict[str, float], baselines: dict[str, dict[str, float]]
) -> dict[str, list[str]]:
    """For each baseline, the metrics on which ``candidate`` is strictly better (all 11 are higher-is-better).

    Args:
        candidate: ``{metric: value}`` of the network.
        baselines: ``{baseline name: {metric: value}}``.

    Returns:
        ``{baseline name: [metrics won]}``.
    """
    return {b: [k for k, v in vals.items() if candidate[k] > v] for b, vals in baselines.items()}


def _net_fuser(weights: str | Path) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    import torch

    from asfe3d.fusion.weights import build_network

    net, _ = build_network(weights)

    def fuse(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            x = torch.from_numpy(np.stack([a, b])[None]).float()
            return net(x)[0, 0].numpy()

    return fuse


def main(argv: list[str] | None = None) -> int:
    """Print baseline (and network) metrics on the HMIF validation split as JSON.

    Args:
        argv: command-line arguments (``None`` = ``sys.argv[1:]``).

    Returns:
        Exit code 0.
    """
    parser = argparse.ArgumentParser(prog="python -m asfe3d.training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="HMIF root (holding PET-MRI/...) or a task folder")
    parser.add_argument("--task", default="PET-MRI", help="HMIF task when --data is the root (default PET-MRI)")
    parser.add_argument("--weights", default=None, help="a 2D weight file to compare with the baselines")
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--gap", type=int, default=2)
    parser.add_argument("--split", choices=("val", "train", "all"), default="val")
    parser.add_argument("--out", default=None, help="write the JSON here too")
    args = parser.parse_args(argv)

    import torch

    from asfe3d.data.hmif import list_pairs, load_pair, split_pairs
    from asfe3d.fusion import get_fuser

    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    root = Path(args.data)
    pairs = list_pairs(root, None if (root / "MRI").is_dir() else args.task)
    train, val = split_pairs(pairs, args.val_fraction, args.gap)
    chosen = {"val": val, "train": train, "all": pairs}[args.split]
    images = [load_pair(p)[:2] for p in chosen]
    result: dict[str, object] = {"split": args.split, "n_pairs": len(images)}
    baselines = {name: evaluate_fuser(get_fuser(name), images) for name in BASELINES}
    result["baselines"] = baselines
    if args.weights:
        net_metrics = evaluate_fuser(_net_fuser(args.weights), images)
        wins = compare_to_baselines(net_metrics, baselines)
        result["asfe"] = net_metrics
        result["wins"] = {b: {"count": len(w), "metrics": w} for b, w in wins.items()}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
