"""The inference engine: models, workers, sampling, chat templates.

Only ``model``, ``worker``, ``sampling`` and ``service`` import ``llama_cpp``; import those
lazily so the rest of llmserve can be tested without it.
"""
