"""The study's pipeline: `mlalign run` as resumable stages (`study`), how a stage runs or skips (`stages`), and an
evaluation run (`evaluate`, also `mlalign eval`)."""
