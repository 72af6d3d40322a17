"""Operations: Prometheus metrics, JSON logs, the engine's statistics snapshots."""
