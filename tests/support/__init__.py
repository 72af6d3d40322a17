"""Test helpers shared by the suites (tiny GGUF builder, ...)."""
