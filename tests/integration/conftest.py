"""Fixtures for tests against real OVS in emulated hosts: ``lab_prerequisites`` comes from
tests/conftest.py."""
