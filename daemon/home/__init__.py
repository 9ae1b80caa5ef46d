"""The home: devices on the MQTT broker, learned from their discovery configs or models.toml."""
