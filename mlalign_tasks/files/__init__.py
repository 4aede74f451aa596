"""Files mlalign reads and writes: atomic writes, output folders and their locks, artefact file names, the YAML files
users hand in, the pinned data files and their downloads, and the names and versions outputs record."""
