"""Requests Tektra understands and carries out itself, before and instead of the model."""
