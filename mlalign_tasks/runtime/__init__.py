"""How long jobs run: progress on stderr, work spread over worker processes, and libraries' known-harmless notices kept
quiet."""
