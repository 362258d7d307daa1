"""The ``vxplane`` command line."""
