"""HTTP inspection service and watch folder for line stations. Torch-free."""
