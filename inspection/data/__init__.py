"""Datasets (torch-free): MVTec AD layout and custom folders, validation, demo generator.

- ``dataset``: ``Sample`` / ``Dataset`` and the readers ``load_dataset`` (a folder is MVTec AD,
  a ``.yaml`` file a custom folder spec), ``load_mvtec``, ``load_folder_spec``.
- ``check``: ``check_dataset(dataset) -> CheckReport`` with per-file ``Problem``s.
- ``demo``: ``write_demo`` / ``write_demo_product``, deterministic textures with defects.
- ``preview`` and ``summary``: contact sheets and report tables.
"""
