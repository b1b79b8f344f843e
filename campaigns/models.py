"""Campaigns, variants, schedules and triggers arrive with the campaigns issue (#4)."""
