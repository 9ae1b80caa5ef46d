"""Satellites: small capture-and-speak processes in other rooms, and the hub that serves them.

A satellite (`tektra satellite`, `station`) listens for the wake word, cuts the request out of the
microphone's audio and sends it to the hub over MQTT; it plays the answer the hub sends back. The
hub (`hub`, inside `tektra run`) keeps one wake when several rooms heard it, transcribes with the
daemon's own Whisper, answers through the assistant and speaks with the daemon's own voice, to the
asking satellite only. `wire` holds the topics and payloads both sides share; `connection` the one
reconnect loop both use.
"""
