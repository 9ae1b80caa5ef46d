"""The faces Tektra shows: MQTT (with the embedded broker and discovery), the socket, Wyoming."""
