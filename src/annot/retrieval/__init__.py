"""Neighbour search in the shared space: FAISS indexes by corpus size, and the tag scoring of each method (pure
numpy)."""
