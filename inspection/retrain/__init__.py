"""Scheduled retraining with a champion/challenger gate."""
