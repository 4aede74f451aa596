"""lm-eval task configs of mlalign (pass this directory as --include_path); see scripts/generate_tasks.py."""
