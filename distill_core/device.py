"""Choosing the torch device: cuda > mps > cpu, with an override and a reason when refused."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceChoice:
    """The device in use and, when a requested one was unavailable, why not."""

    device: torch.device
    requested: str
    reason: str = ""

    def describe(self) -> str:
        """One line for the sidebar and the CLI, e.g. ``cpu (cuda requested: not available)``."""
        name = str(self.device)
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        if self.reason:
            name += f" - {self.reason}"
        return name


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def choose_device(requested: str | None = "auto") -> DeviceChoice:
    """Resolve ``"auto" | "cpu" | "cuda[:i]" | "mps"`` to an available device.

    ``auto`` prefers cuda, then mps, then cpu. An unavailable request falls back to the cpu
    and the returned ``reason`` says why, so callers can show it instead of crashing.
    """
    requested = (requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return DeviceChoice(torch.device("cuda"), requested)
        if _mps_available():
            return DeviceChoice(torch.device("mps"), requested)
        return DeviceChoice(torch.device("cpu"), requested)
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            return DeviceChoice(torch.device("cpu"), requested, f"{requested} requested: CUDA is not available")
        dev = torch.device(requested)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            return DeviceChoice(
                torch.device("cpu"), requested, f"{requested} requested: only {torch.cuda.device_count()} GPU(s)"
            )
        return DeviceChoice(dev, requested)
    if requested == "mps":
        if not _mps_available():
            return DeviceChoice(torch.device("cpu"), requested, "mps requested: not available")
        return DeviceChoice(torch.device("mps"), requested)
    if requested == "cpu":
        return DeviceChoice(torch.device("cpu"), requested)
    raise ValueError(f"unknown device {requested!r}: use auto, cpu, cuda, cuda:N or mps")


def bf16_supported(device: torch.device) -> bool:
    """Whether ``device`` runs bfloat16 autocast natively (CUDA: compute capability 8.0+, i.e. Ampere or later)."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu"
