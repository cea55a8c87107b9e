"""The web dashboard's page, script and style sheet, served by cluster.observe.web_dashboard (package data)."""
