"""Set the network input's stream type to the integer width its consumer declares (int8 by default)."""

from hls4ml.model.layers import Input
from hls4ml.model.optimizer import OptimizerPass
from hls4ml.model.types import IntegerPrecisionType


class SetInputPrecision(OptimizerPass):
    def match(self, node):
        if not isinstance(node, Input):
            return False
        consumers = [n for n in node.model.get_layers() if node.outputs[0] in n.inputs and n.get_attr("in_bits")]
        if not consumers:
            return False
        want = IntegerPrecisionType(width=int(consumers[0].get_attr("in_bits")),
                                    signed=bool(consumers[0].get_attr("in_signed")))
        have = node.get_output_variable().type.precision
        return not (isinstance(have, IntegerPrecisionType) and have.width == want.width and have.signed == want.signed)

    def transform(self, model, node):
        consumer = next(n for n in model.get_layers() if node.outputs[0] in n.inputs and n.get_attr("in_bits"))
        node.get_output_variable().type.precision = IntegerPrecisionType(
            width=int(consumer.get_attr("in_bits")), signed=bool(consumer.get_attr("in_signed")))
        return False
