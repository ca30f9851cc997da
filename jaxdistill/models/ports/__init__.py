"""Flax ports of published diffusion networks, with torch-free readers of their checkpoints."""
