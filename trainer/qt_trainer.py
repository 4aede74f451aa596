"""`QTTrainer`: TRL's `SFTTrainer` whose length-balanced batches follow the run's seed, with cuDNN attention a choice,
and whose checkpoints are saved whole or not at all."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers.trainer_callback import ProgressCallback
from transformers.trainer_pt_utils import BatchRebalanceSampler
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import SFTTrainer

from mlalign_tasks.errors import MlalignError


@contextmanager
def saved_whole(folder: Path, what: str) -> Iterator[None]:
    """Run a save into `folder`; a write that fails (a full disk, a file-size limit) removes the folder, unless it
    was there before, and becomes one MlalignError, not the traceback of whichever writer failed."""
    existed = folder.exists()
    try:
        yield
    except (OSError, RuntimeError, SafetensorError) as e:  # RuntimeError: torch.save's failed writes
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e).splitlines()[0]
        raise MlalignError(
            f"cannot save {what} in {folder.parent} ({reason}); nothing of it is kept: free some space and rerun the "
            "same command, which resumes from the last complete checkpoint"
        ) from None


class QTTrainer(SFTTrainer):
    """``SFTTrainer`` that seeds ``train_sampling_strategy: batch_rebalance`` with ``--data_seed`` / ``--seed``, trains
    with PyTorch's cuDNN attention backend on or off as ``--cudnn_attention`` says, and removes a checkpoint whose
    save failed (`saved_whole`).

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
            for callback in self.callback_handler.callbacks:  # left open by an error, which then starts a line
                if isinstance(callback, ProgressCallback) and callback.training_bar is not None:
                    callback.training_bar.close()
                    callback.training_bar = None

    def _get_train_sampler(self, train_dataset=None):
        sampler = super()._get_train_sampler(train_dataset)
        if isinstance(sampler, BatchRebalanceSampler):
            sampler.seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        return sampler

    def _save_checkpoint(self, model, trial):
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        with saved_whole(folder, folder.name):
            super()._save_checkpoint(model, trial)
