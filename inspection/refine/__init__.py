"""Defect-mask refinement (torch-free): prompts from anomaly maps, classical and SAM refiners.
``build_refiner(refine_config_in(site.configs))`` gives a ``MaskRefiner`` for an Inspector; the
SAM refiner (openvino) loads only when asked for.
"""
