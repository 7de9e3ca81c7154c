"""Print the next-batch loss of a checkpoint as JSON (run once per rank).

Usage: python tests/next_batch_loss.py CONFIG_JSON OUT_JSON
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from plsc_cli import console

    console.prepare_paddle_env()
    from plsc_cli.config import TrainConfig
    from plsc_cli.engine import checkpoint
    from plsc_cli.engine.trainer import Trainer

    config = TrainConfig.load(sys.argv[1])
    trainer = Trainer(config)
    trainer.restore(checkpoint.resolve_resume(config.resume, config.output_dir))
    loss = trainer.next_batch_loss()
    if trainer.rank == 0:
        with open(sys.argv[2], "w") as f:
            json.dump({"loss": loss, "world_size": trainer.world_size}, f)
    trainer.data.close()


if __name__ == "__main__":
    main()
