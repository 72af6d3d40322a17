"""The OpenAI dialect: wire types, codec, routes and response rendering."""
