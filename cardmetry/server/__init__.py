"""The web app (FastAPI): the HTTP API, the WebSocket of run events, and `cardmetry serve`."""
