"""AdderFlow's hls4ml backend ('AdderVitis'): IR layers, Keras handlers, templates, passes, writer.

hls4ml discovers it through the `hls4ml.backends` entry point (`flow.hls.plugin:register`); then
`hls4ml.converters.convert_from_keras_model(flow.qlayers.qnet_to_keras(qnet), backend='AdderVitis',
io_type='io_stream', ...)` works. `flow.hls.project` wraps that for a QNet (config, compile, csim).
"""

# Import hls4ml before any submodule: hls4ml loads this backend plugin while it initialises, and the
# plugin imports flow.hls.backend/writer; starting from a submodule would make that import circular.
import hls4ml  # noqa: E402,F401
