"""`QTTrainer`: TRL's `SFTTrainer` whose length-balanced batches follow the run's seed, with cuDNN attention a choice."""

from __future__ import annotations

import torch
from transformers.trainer_pt_utils import BatchRebalanceSampler
from trl import SFTTrainer


class QTTrainer(SFTTrainer):
    """``SFTTrainer`` that seeds ``train_sampling_strategy: batch_rebalance`` with ``--data_seed`` / ``--seed``, and
    trains with PyTorch's cuDNN attention backend on or off as ``--cudnn_attention`` says.

    transformers builds its ``BatchRebalanceSampler`` with a fixed seed (42), so without this every ``--seed``
    would see the same example order.
    """

    def train(self, *args, **kwargs):
        before = torch.backends.cuda.cudnn_sdp_enabled()
        torch.backends.cuda.enable_cudnn_sdp(self.args.cudnn_attention)
        try:
            return super().train(*args, **kwargs)
        finally:
            torch.backends.cuda.enable_cudnn_sdp(before)

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, BatchRebalanceSampler):
            sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return sampler
