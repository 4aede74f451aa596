"""mlalign question-alignment trainer (import name ``mlalign_trainer``): QLoRA SFT on TRL."""

import mlalign_tasks  # noqa: F401  (quiets bitsandbytes' start-up notice before TRL / PEFT import it)
