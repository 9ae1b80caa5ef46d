"""The foundation every layer stands on: errors, configuration, the event bus, model sources."""
