"""How the flows are served and deployed: serve script, automations, Nagios check, service files."""
