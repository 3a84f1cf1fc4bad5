"""Adapters that let annotation platforms use the service with nothing but their own configuration."""
