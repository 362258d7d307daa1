"""FastAPI dependencies as Annotated aliases: session, flow sync, settings and event hub."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, cast

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from controller.api.writer import Writer
from controller.config import Settings
from controller.events import EventHub
from controller.sync import FlowSync


def get_session(request: Request) -> Iterator[Session]:
    """A session for one request; anything not committed is rolled back at the end."""
    factory = cast(sessionmaker[Session], request.app.state.session_factory)
    with factory() as session:
        yield session


def get_sync(request: Request) -> FlowSync:
    """The flow sync the app was built with."""
    return cast(FlowSync, request.app.state.sync)


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    return cast(Settings, request.app.state.settings)


def get_events(request: Request) -> EventHub:
    """The event hub the app publishes to."""
    return cast(EventHub, request.app.state.events)


def get_writer(request: Request) -> Writer:
    """The group-commit writer of endpoint writes."""
    return cast(Writer, request.app.state.writer)


SessionDep = Annotated[Session, Depends(get_session)]
SyncDep = Annotated[FlowSync, Depends(get_sync)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
EventsDep = Annotated[EventHub, Depends(get_events)]
WriterDep = Annotated[Writer, Depends(get_writer)]
