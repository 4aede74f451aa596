"""mlalign: question-alignment for multilingual LLMs — evaluation tasks, data, leaderboards, analyses."""

__version__ = "0.1.0"
