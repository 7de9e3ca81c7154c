"""The training data of one rank, built from the config."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

from plsc_cli.config import TrainConfig

logger = logging.getLogger(__name__)


class TrainData:
    """One rank's loader plus what the trainer needs to know about the data."""

    def __init__(self, config: TrainConfig, rank: int, world_size: int) -> None:
        from plsc_cli.data.pipeline import ShardSampler, TrainLoader, build_train_source

        source = build_train_source(config.data)
        sampler = ShardSampler(len(source), rank, world_size, seed=config.seed)
        self.loader = TrainLoader(
            source,
            sampler,
            batch_size=config.batch_size,
            num_workers=config.workers,
            seed=config.seed,
        )
        self.num_classes = int(source.num_classes)
        self.num_samples = len(source)
        self.steps_per_epoch = len(self.loader)
        if rank == 0:
            logger.info(
                "data %s: %d images of %d identities, %d steps per epoch",
                config.data,
                self.num_samples,
                self.num_classes,
                self.steps_per_epoch,
            )

    def epoch_batches(
        self, epoch: int, start_batch: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (float32 images [B, 3, H, W], int64 labels [B]) from a batch on."""
        return self.loader.epoch_batches(epoch, start_batch)

    def close(self) -> None:
        self.loader.close()


def build_train_data(config: TrainConfig, rank: int, world_size: int) -> TrainData:
    return TrainData(config, rank, world_size)
