"""The scanner: sources -> decode workers -> batcher -> scorer -> report writer, driven in one direction.

Imports no torch itself: the engine it is given loads the model.
"""
