"""What the routers take from the running app."""

from fastapi import Request

from ..batches import BatchService
from ..config import Settings
from ..store.base import Store
from ..updates import UpdateService


def batches(request: Request) -> BatchService:
    return request.app.state.batches


def store(request: Request) -> Store:
    return request.app.state.store


def settings(request: Request) -> Settings:
    return request.app.state.settings


def updates(request: Request) -> UpdateService:
    return request.app.state.updates
