"""A websocket chat app, before and after adopting chatpersist (see README.md)."""
