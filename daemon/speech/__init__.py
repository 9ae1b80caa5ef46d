"""Voice out: answers spoken sentence by sentence as the model writes them.

`text` cuts a token stream into speakable sentences, `engines` turns a sentence into audio
(piper or espeak-ng, each in a process of its own), `player` plays audio gaplessly and holds the
microphone while it does, and `speaker` ties them to the event bus.
"""
