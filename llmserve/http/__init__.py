"""The HTTP layer: a Litestar app over the Engine protocol."""
