"""models.toml: schema, loading and validation."""
