"""Print the parameters and multiply-adds of every registered backbone.

Usage: ``python benchmarks/backbone_complexity.py``. The output is the Markdown
table in docs/backbones.md, for embedding sizes 512 and 128.
"""

from __future__ import annotations

import argparse

from plsc_cli.console import prepare_paddle_env

EMBEDDING_SIZES = (512, 128)


def complexity_row(name: str, embedding_size: int) -> tuple[int, int]:
    """Return (parameters, multiply-adds at 112x112) of one backbone."""
    from plsc_cli.models import build_backbone
    from plsc_cli.models.complexity import count_macs, count_parameters

    model = build_backbone(name, embedding_size=embedding_size)
    return count_parameters(model), count_macs(model)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    prepare_paddle_env(1)
    from plsc_cli.models import list_backbones

    header = ["Backbone"]
    for size in EMBEDDING_SIZES:
        header += [f"Params (M), emb {size}", f"MACs (G), emb {size}"]
    print("| " + " | ".join(header) + " |")
    print("|---" + "|---:" * (len(header) - 1) + "|")
    for name in list_backbones():
        cells = [name]
        for size in EMBEDDING_SIZES:
            params, macs = complexity_row(name, size)
            cells += [f"{params / 1e6:.2f}", f"{macs / 1e9:.3f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
