"""`python -m p3m.training CONFIG.yaml [options]`: the entry point torchrun launches on every rank.

    torchrun --nproc_per_node 2 -m p3m.training configs/p3mnet_r34.yaml --data-root P3M-10k

It is `p3m train` run on this rank (`p3m.cli.train_cmd.rank_main`): the same options, the same
checks, one option table; rank 0 shows the progress and prints the results.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from p3m.cli.train_cmd import rank_main

    return rank_main(argv)


if __name__ == "__main__":
    sys.exit(main())
