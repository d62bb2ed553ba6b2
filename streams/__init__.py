"""The Faust application: settings, topics, tables, agents, web views and the command line."""
