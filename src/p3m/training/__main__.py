"""`python -m p3m.training CONFIG.yaml [options]`: the entry point torchrun launches on every rank.

    torchrun --nproc_per_node 2 -m p3m.training configs/p3mnet_r34.yaml --data-root P3M-10k
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from p3m.errors import P3MError

# Explicit flags and the config key each one sets.
FLAG_KEYS = {
    "model": "model",
    "protocol": "data.protocol",
    "data_root": "data.root",
    "normal_images": "data.normal_images",
    "out": "run.out_dir",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "max_steps": "optim.max_steps",
    "workers": "data.workers",
    "device": "run.device",
    "seed": "run.seed",
    "backbone_weights": "run.backbone_weights",
}


def flags_to_values(flags: dict[str, object]) -> dict[str, object]:
    """Config values (dotted key -> value) of the explicit flags that were given (None = not given)."""
    return {FLAG_KEYS[name]: value for name, value in flags.items() if value is not None and name in FLAG_KEYS}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m p3m.training", description="Train a P3M-Net model.")
    parser.add_argument("config", nargs="?", default=None, help="YAML training config")
    parser.add_argument("--model", help="registered model name, e.g. p3mnet-r34 or basic-r34 (Table 7)")
    parser.add_argument("--protocol", choices=("B", "N"), help="training images: B blurred, N normal")
    parser.add_argument("--data-root", help="P3M-10k root folder")
    parser.add_argument("--normal-images", help="folder of normal training images (protocol N)")
    parser.add_argument("--out", help="output folder (run.out_dir)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="global batch size")
    parser.add_argument("--lr", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--device")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--backbone-weights", help="ImageNet checkpoint of the backbone")
    parser.add_argument("--resume", help="resumable checkpoint to continue from")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=1e-4 (repeatable)")
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from p3m.training.config import load_config
    from p3m.training.trainer import train

    try:
        flags = {name: getattr(args, name) for name in FLAG_KEYS}
        config = load_config(args.config, args.overrides, values=flags_to_values(flags))
        train(config, resume=args.resume)
    except P3MError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
