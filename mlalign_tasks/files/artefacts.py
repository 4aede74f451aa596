"""File names of the artefacts one command writes and another reads (models, adapters, training runs).

A plain module of constants with no imports, so that any layer (trainer, evaluation, leaderboard) can name them
without importing another layer.
"""

MODEL_FILE = "config.json"  # makes a folder a transformers model
ADAPTER_FILE = "adapter_config.json"  # makes a folder a PEFT adapter
RUN_FILE = "mlalign_run.json"  # a training run's settings, written when it starts (checked on resume)
METADATA_FILE = "mlalign_training.json"  # a finished adapter's training metadata, written last (leaderboard input)
MERGED_START_DIR = "init-merged"  # in a stage-II run merging its stage-I adapter: the merged model it trains on
