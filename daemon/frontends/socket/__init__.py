"""The local Unix socket: server, access rules, connections, and the CLI's client."""
