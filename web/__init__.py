"""The web views a worker serves: operations (health, readiness, metrics) and the LA dashboard."""
