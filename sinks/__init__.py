"""Where decisions go: alert topics, the SQL register and webhooks, each behind a small interface."""
