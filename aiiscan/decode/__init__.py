"""Decoding: one file's bytes into the facts of its row and the crops the model sees.

Runs in worker processes and imports no torch, so workers stay small and start fast.
"""
