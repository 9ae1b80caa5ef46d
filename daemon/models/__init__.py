"""The model layer: the unified manager, its backends, chat templates, GGUF headers, media."""
