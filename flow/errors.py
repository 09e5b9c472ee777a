"""Errors a user can act on.

Every failure caused by input (a file, a layer, a value) is raised as `AdderFlowError` with one line
naming the problem; the CLI prints that line and exits non-zero instead of a deep traceback.
"""


class AdderFlowError(Exception):
    """A user-facing error: the message is one line naming the file, layer or value at fault."""

    exit_code = 1


class ToolMissingError(AdderFlowError):
    """A vendor tool (vitis_hls, vivado) needed for this step is not on PATH; outputs so far are kept."""

    exit_code = 2
