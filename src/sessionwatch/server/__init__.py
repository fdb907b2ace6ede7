"""The HTTP server: the ASGI app, REST API, /stream, sign-in and the request guard."""
