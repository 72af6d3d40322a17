"""Model files: the local store, Hub downloads, GGUF metadata and the ``pull``/``models`` verbs."""
