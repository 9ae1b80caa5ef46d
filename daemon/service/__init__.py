"""The service: composition root, supervision, systemd, metrics, doctor, unit install."""
