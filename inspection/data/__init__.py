"""Datasets (torch-free): MVTec AD layout and custom folders, validation, demo generator."""
