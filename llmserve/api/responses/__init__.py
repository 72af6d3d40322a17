"""The OpenAI Responses dialect: wire types, codec, translation, SSE events, store and routes."""
