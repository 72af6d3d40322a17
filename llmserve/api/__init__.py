"""HTTP: one sub-package per API dialect, and what the dialects share (app, auth, rate limit,
error envelopes, request observation, the OpenAPI document)."""
