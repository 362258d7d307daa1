"""The REST API (FastAPI): build it with ``controller.api.app.create_app``."""
