"""KServe V2 HTTP/REST frontend as a raw ASGI application."""
