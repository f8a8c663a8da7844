"""Defect-mask refinement (torch-free): prompts from anomaly maps, classical and SAM refiners."""
