"""The MQTT face: the link, its outbox, the embedded broker, Home Assistant discovery."""
