"""Offline by design (DESIGN.md): training, prediction and export of every available backend open no connection
beyond loopback. Each backend also trains for a few steps on tiny renders here, through the real training loop."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cardmetry.data.images import load_image
from cardmetry.models.export import export_checkpoint
from cardmetry.models.predictors import OnnxPredictor, load_predictor
from cardmetry.models.registry import list_backends
from cardmetry.training.data import prepare_data
from cardmetry.training.events import read_events
from cardmetry.training.loop import train_run
from cardmetry.training.runs import RunDir
from tests.training.toy import tiny_config

TRAINABLE = [info.name for info in list_backends() if info.unavailable is None and info.trainable]


def _loopback(host: object) -> bool:
    if not isinstance(host, str):
        return True  # AF_UNIX paths and the like never leave the machine
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a host name: resolving it is already a lookup on the network


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    attempts: list[str] = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if not _loopback(host):
            attempts.append(str(address))
            raise OSError(f"test: network access to {address} is forbidden")

    def connect(self: socket.socket, address: object) -> None:
        check(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: object) -> int:
        check(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: object, *args: object, **kwargs: object):
        check((host,))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts
    assert not attempts, f"network access attempted: {attempts}"


def test_the_guard_catches_a_connection(no_network: list[str]) -> None:
    with pytest.raises(OSError, match="forbidden"):
        socket.create_connection(("192.0.2.1", 80), timeout=0.1)
    assert no_network
    no_network.clear()  # the attempt was this test's own


@pytest.mark.parametrize("backend", TRAINABLE)
def test_each_backend_trains_predicts_and_exports_offline(backend, tiny_cards, no_network, tmp_path: Path) -> None:
    config = tiny_config(backend=backend, imgsz=64, epochs=1, max_steps=2, batch=2)
    run = RunDir(tmp_path / "run")
    assert train_run(run, config, prepare_data(config, tiny_cards)) == "succeeded", read_events(run.events)[-1]
    image = load_image(tiny_cards.root / tiny_cards.dataset.images[0].path)
    found = load_predictor(run.best).predict(image)
    assert all(i.mask.shape == image.shape[:2] and i.class_id == 0 for i in found)
    try:
        report = export_checkpoint(run.best, tmp_path / "model.onnx")
    except NotImplementedError as error:  # a backend without ONNX export says so, naming itself
        assert backend in str(error)
        return
    assert report.same_instances
    onnx_found = OnnxPredictor(report.path).predict(image)
    assert [i.class_id for i in onnx_found] == [i.class_id for i in found]
    assert np.isfinite(report.max_mask_difference)
