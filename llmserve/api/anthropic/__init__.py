"""The Anthropic Messages dialect: wire types, codec, routes and the SSE event sequence."""
