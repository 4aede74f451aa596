"""The task side: the one language table, the benchmark suites, the paper, math and toy tasks lm-eval runs (data
loaders, prompts, hooks), and how their answers are extracted and their labels scored."""
