"""The inference core: registry, service, worker, jobs, sampling, prefix cache, eviction, model.

Only ``model``, ``worker``, ``sampling``, ``embeddings`` and ``service`` import ``llama_cpp``;
import those lazily so the rest of llmserve can be tested without it.
"""
