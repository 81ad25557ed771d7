"""Models: cards (the one source of truth for preprocessing), architectures, registry on disk."""
