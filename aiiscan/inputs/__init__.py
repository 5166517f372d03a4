"""Inputs: what a scan reads, named exactly. Local files, objects in stores, archive members.

Imports no torch: decode workers and Ray's decode tasks use it.
"""
