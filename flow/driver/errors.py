"""Errors the driver raises: all `flow.errors.AdderFlowError` (one line naming the problem)."""

from flow.errors import AdderFlowError


class DriverError(AdderFlowError):
    """Something about running the accelerator went wrong."""


class InputError(DriverError, ValueError):
    """The images/integers handed to the driver are not what the network takes (dtype, shape, NaN, range)."""


class OverlayFileError(DriverError, FileNotFoundError):
    """A file the overlay needs (.bit, .hwh, qnet) is missing."""


class DmaTimeoutError(DriverError, TimeoutError):
    """A DMA transfer did not finish in time (the accelerator stalled or the bitstream does not match)."""


class DmaError(DriverError):
    """The DMA or accelerator reported an error (wrong transfer length, missing TLAST, ...)."""
