"""In-process replay of a replay file through the worker's validation and rules, on one core or several."""
