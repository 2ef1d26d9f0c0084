"""Embedded emulator of the D365 F&O OData metadata service (offline tests, demos, benchmarks)."""

from .dataset import Dataset, build_dataset
from .options import EmulatorError, EmulatorOptionError, EmulatorOptions
from .server import Emulator, serve

__all__ = [
    "Dataset",
    "Emulator",
    "EmulatorError",
    "EmulatorOptionError",
    "EmulatorOptions",
    "build_dataset",
    "serve",
]
