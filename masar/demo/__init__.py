"""The demo store: a deterministic, believable online store emitted as Segment messages (docs/demo.md)."""

from __future__ import annotations

from masar.demo.generator import PLANTED, DemoConfig, DemoStore, build_demo

__all__ = ["PLANTED", "DemoConfig", "DemoStore", "build_demo"]
