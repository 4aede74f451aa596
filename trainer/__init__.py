"""mlalign question-alignment trainer (import name ``mlalign_trainer``): QLoRA SFT on TRL."""
