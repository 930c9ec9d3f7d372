"""Generative closures: autoencoders, conditional FNOs, VE-SDE score models, flow matching."""
