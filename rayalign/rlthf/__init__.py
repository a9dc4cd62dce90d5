"""rlthf."""
