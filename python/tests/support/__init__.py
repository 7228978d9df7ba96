"""Test support: fixtures and builders of local test models and sites."""
