"""Models arrive with this app's capability issue; they share the one schema."""
