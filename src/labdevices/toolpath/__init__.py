"""Toolpath and deposition core: scaffolds, meshes and well plates to layer paths and G-code."""
