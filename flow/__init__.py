"""AdderFlow: quantized AdderNets from Keras/QKeras to Vitis HLS and PYNQ.

Importing `flow` must stay cheap and numpy-only: the PYNQ driver (`flow.driver`) and the integer
contract (`flow.qnet`) run on boards that have no TensorFlow, QKeras or hls4ml.
"""

__version__ = "0.1.0"
