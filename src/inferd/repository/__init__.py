"""Reads Triton-style model repositories: folders, versions and config files. Imports no backend."""
