"""A weighted average of the inference weights of checkpoints of one architecture ("model soup").

Fine-tuning a model on new data for a short budget trades some of what it knew for what it learns;
averaging the weights of the start and the fine-tuned model, or of fine-tunes from one start,
often keeps both. Batch-norm running statistics are averaged with the same weights.

    python scripts/average_weights.py A.pt B.pt [C.pt ...] --weights 0.5 0.5 --out soup.pt [--half]

The config, step and metrics come from the first checkpoint; the output is an inference-only
checkpoint like ``aerocolor export --slim``.
"""

from __future__ import annotations

import argparse

from aerocolor.checkpoint import load_checkpoint, save_checkpoint, slim_checkpoint
from aerocolor.errors import AerocolorError


def average(paths: list[str], weights: list[float]) -> dict:
    ckpts = [load_checkpoint(p) for p in paths]
    names = set(ckpts[0]["nets"]).intersection(*(c["nets"] for c in ckpts[1:]))
    nets = {}
    for name in ("netG",) if "netG" in names else sorted(names):
        sds = [c["nets"][name] for c in ckpts]
        for p, sd in zip(paths, sds, strict=True):
            if sd.keys() != sds[0].keys() or any(sd[k].shape != sds[0][k].shape for k in sd):
                raise AerocolorError(f"{p}: {name} has other layers than {paths[0]}; average checkpoints "
                                     "of one architecture")
        out = {}
        for k, v in sds[0].items():
            if v.is_floating_point():
                out[k] = sum(w * sd[k].float() for w, sd in zip(weights, sds, strict=True))
            else:  # counters (num_batches_tracked) are not averaged
                out[k] = v
        nets[name] = out
    return {**{k: ckpts[0][k] for k in ("config", "step", "best", "metrics") if k in ckpts[0]},
            "nets": nets}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--weights", nargs="+", type=float, default=None, help="one per checkpoint (default: equal)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--half", action="store_true", help="store float16 weights, as the bundled model is")
    args = ap.parse_args()
    weights = args.weights or [1.0 / len(args.checkpoints)] * len(args.checkpoints)
    if len(weights) != len(args.checkpoints) or abs(sum(weights) - 1) > 1e-6:
        raise SystemExit(f"--weights: give one weight per checkpoint ({len(args.checkpoints)}), summing to 1")
    soup = average(args.checkpoints, weights)
    save_checkpoint(args.out, slim_checkpoint(soup, tuple(soup["nets"]), args.half))
    print(f"{args.out}: {' + '.join(f'{w:g} x {p}' for w, p in zip(weights, args.checkpoints, strict=True))}")


if __name__ == "__main__":
    main()
