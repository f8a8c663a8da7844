"""Torch-free foundation shared by every layer: types, config, registry, bundles."""
