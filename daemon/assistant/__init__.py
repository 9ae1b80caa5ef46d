"""The assistant: answers, commands and their wire protocol, the voice bridge."""
