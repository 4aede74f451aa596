"""`QTTrainer`: TRL's `SFTTrainer` whose length-balanced batches follow the run's seed."""

from __future__ import annotations

from transformers.trainer_pt_utils import BatchRebalanceSampler
from trl import SFTTrainer


class QTTrainer(SFTTrainer):
    """``SFTTrainer`` that seeds ``train_sampling_strategy: batch_rebalance`` with ``--data_seed`` / ``--seed``.

    transformers builds its ``BatchRebalanceSampler`` with a fixed seed (42), so without this every ``--seed``
    would see the same example order.
    """

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, BatchRebalanceSampler):
            sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return sampler
