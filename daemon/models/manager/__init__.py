"""The unified model manager: one front for every engine."""
