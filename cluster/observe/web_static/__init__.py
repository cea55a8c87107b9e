"""The web dashboard's page, script and style sheet, served by cluster.web (package data)."""
