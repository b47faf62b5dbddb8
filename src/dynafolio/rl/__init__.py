"""Reinforcement learning: the Top-K projection, the Gymnasium environment, its batched
VecEnv and the PPO agents (import the submodules; torch and SB3 load only when needed)."""
