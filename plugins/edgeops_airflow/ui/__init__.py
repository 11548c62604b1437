"""The edgeops plugin's UI side: extra links (links.py) and the Fleet app (fleet_app.py)."""
