"""Datasets (torch-free): MVTec AD layout and custom folders (``dataset``), validation
(``check``), demo generators (``demo``), contact sheets and report tables."""
