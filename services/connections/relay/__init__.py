"""The relay: the connections service's data plane (its own process, the connections database)."""
