"""The aiohttp application: websockets, HTTP API, health, and the pages."""
