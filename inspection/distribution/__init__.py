"""Bundle distribution: the central registry serves live bundles, stations pull them.

``archive`` packs a bundle folder into a deterministic tar with a manifest of digests,
``catalog`` is the authenticated HTTP endpoint (``inspection registry serve``) and
``sync`` is the station side (``inspection station sync``). Torch-free: stations run it.
"""
