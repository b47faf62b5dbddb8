"""Reinforcement-learning pieces: the Top-K projection (and, later, the environments)."""
